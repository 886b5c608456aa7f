"""Independent tasks (sensitivity cells, sweep points) run in process or on Ray."""

from __future__ import annotations

from onnxprune.parallel.executor import (
    Executor,
    InProcessExecutor,
    TaskFailure,
    open_executor,
)

__all__ = ["Executor", "InProcessExecutor", "TaskFailure", "open_executor"]
