"""Run independent tasks in process (the default) or on a Ray cluster.

Rules:

1. :func:`open_executor` with neither ``workers`` nor ``address`` gives an
   :class:`InProcessExecutor`: tasks run one after another in this process, in order,
   exactly as a plain loop would. ``workers=N`` starts a local Ray instance with ``N``
   CPUs (no dashboard, no set-up by the user) and shuts it down on exit; ``address``
   joins an existing cluster (``ray.init(address=...)``, e.g. ``auto`` or
   ``ray://host:10001``) and leaves it running. Ray not installed -> exit 7 naming
   ``pip install 'onnxprune[distributed]'``.
2. ``executor.map(fn, tasks, shared=...)`` calls ``fn(shared, task)`` for every task
   and returns the results in task order, whatever order they finish in. ``fn`` must be
   a module-level function (it is pickled); ``shared`` (the model bytes, the data) goes
   to Ray's object store ONCE, each task carries only its own small description.
3. A task that raises: with ``keep_going=False`` its exception is raised again with its
   own type (an :class:`~onnxprune.errors.OnnxPruneError` keeps its exit code) and the
   tasks not started are cancelled; with ``keep_going=True`` its slot holds a
   :class:`TaskFailure` and the other tasks still run.
4. ``progress(done, total)`` is called after every finished task (the CLI draws its bar
   from it); Ray's own log lines go to the ``onnxprune.parallel`` logger, not stdout.
5. The executor adds no randomness: a task's result depends only on ``shared`` and the
   task, so a Ray run equals the in-process run with the same seeds.
"""

from __future__ import annotations

__all__ = ["Executor", "InProcessExecutor", "TaskFailure", "open_executor"]

import contextlib
import dataclasses
import logging
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Protocol

from onnxprune.errors import OnnxPruneError, RuntimeMissingError, UsageError

logger = logging.getLogger(__name__)

INSTALL_HINT = "pip install 'onnxprune[distributed]'"

Progress = Callable[[int, int], None]


@dataclasses.dataclass(frozen=True)
class TaskFailure:
    """A task that raised (rule 3): the exception's type name and message."""

    kind: str
    error: str
    exit_code: int | None = None

    @classmethod
    def of(cls, exc: BaseException) -> TaskFailure:
        code = int(exc.exit_code) if isinstance(exc, OnnxPruneError) else None
        return cls(type(exc).__name__, str(exc), code)


class Executor(Protocol):
    """What the sensitivity and sweep layers need from an executor."""

    name: str
    workers: int

    def map(self, fn: Callable[[Any, Any], Any], tasks: Sequence[Any], *,
            shared: Any = None, progress: Progress | None = None,
            keep_going: bool = False) -> list[Any]: ...


class InProcessExecutor:
    """Tasks one after another in this process (rule 1, the default)."""

    name = "in-process"
    workers = 1

    def map(self, fn: Callable[[Any, Any], Any], tasks: Sequence[Any], *,
            shared: Any = None, progress: Progress | None = None,
            keep_going: bool = False) -> list[Any]:
        results: list[Any] = []
        for done, task in enumerate(tasks, start=1):
            try:
                results.append(fn(shared, task))
            except Exception as exc:
                if not keep_going:
                    raise
                logger.warning("task %d of %d failed: %s", done, len(tasks), exc)
                results.append(TaskFailure.of(exc))
            if progress is not None:
                progress(done, len(tasks))
        return results


def _ray():
    try:
        import ray
    except ImportError as exc:
        raise RuntimeMissingError(
            f"--workers/--ray-address need Ray: {INSTALL_HINT}") from exc
    return ray


@contextlib.contextmanager
def open_executor(workers: int | None = None,
                  address: str | None = None) -> Iterator[Executor]:
    """The executor of rule 1, closed (a local Ray shut down) on exit."""
    if workers is not None and workers < 1:
        raise UsageError(f"--workers must be >= 1, got {workers}")
    if workers is None and not address:
        yield InProcessExecutor()
        return
    from onnxprune.parallel.ray_executor import RayExecutor

    executor = RayExecutor.start(_ray(), workers=workers, address=address)
    try:
        yield executor
    finally:
        executor.close()
