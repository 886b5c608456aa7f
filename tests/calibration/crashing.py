"""A calibration step that kills its process the way a native ONNX Runtime crash does
(importable by name: it runs in the isolated child)."""

from __future__ import annotations

import os
import signal


def crash(*_args) -> None:
    os.kill(os.getpid(), signal.SIGSEGV)
