"""Calibration runs that can crash ONNX Runtime, kept from killing the caller.

Rules:

1. ``guarded(func, *args, what=...)`` runs ``func(*args)`` (a module-level function,
   importable by name, with picklable arguments and result) in a child process through
   :func:`onnxprune.training.isolate.run_isolated`, the mechanism fine-tuning uses. A
   native crash (SIGSEGV, SIGFPE, abort) becomes an :class:`UnsupportedModelError`
   that names the step, the signal, the input shapes of the run and what to try
   (``--input-shape``, a data-free criterion); project errors raised in the child
   come back with their type and message.
2. ``ONNXPRUNE_ISOLATE_CALIBRATION``: ``1`` always isolates, ``0`` never; unset
   (``auto``) isolates models whose serialized size is at least ``AUTO_BYTES``
   (4 MiB). The child costs the start of one interpreter with onnxprune and ONNX
   Runtime (measured: the calibration tests on the small fixtures took 7m50s isolated
   against 33s in process, 2 shared cores), which dominates on tiny models and is
   noise on real ones, where the crashes were seen.
3. ``preflight(func, *args, what=...)`` is for steps whose state (onnx-ir analysis,
   models edited wave by wave) cannot be sent to a child (least-squares recovery,
   sensitivity): when rule 2 isolates, ``func`` (typically
   :func:`onnxprune.calibration.tap.first_batch`) builds the step's sessions in a
   child and runs them on ONE batch; a crash there is rule 1's error, and the step
   then runs in process. Native ONNX Runtime crashes are deterministic per graph and
   input shape (the class seen in the field), so this covers them; a crash that only a
   later batch (other values) triggers is not covered. Isolation off: nothing runs.
"""

from __future__ import annotations

__all__ = ["guarded", "isolation_enabled", "preflight"]

import logging
import os
from collections.abc import Callable
from typing import Any

import onnx

from onnxprune.graph import input_shapes

logger = logging.getLogger(__name__)

ENV = "ONNXPRUNE_ISOLATE_CALIBRATION"


AUTO_BYTES = 4 * 2**20


def isolation_enabled(args: tuple = ()) -> bool:
    """Rule 2; ``args`` are the step's arguments (the model among them)."""
    setting = os.environ.get(ENV, "auto").strip().lower()
    if setting in ("0", "false", "no", "off"):
        return False
    if setting in ("1", "true", "yes", "on"):
        return True
    return any(isinstance(a, onnx.ModelProto) and a.ByteSize() >= AUTO_BYTES for a in args)


def call(func: Callable, args: tuple, report: Callable | None = None) -> Any:
    """The child's side: ``func(*args)`` (``report`` is unused)."""
    return func(*args)


def _hint() -> str:
    resolved = input_shapes.current()
    shapes = f" at input shapes {resolved.describe()}" if resolved is not None else ""
    return (f"the model crashed ONNX Runtime{shapes}. If the model expects another input "
            "size, pass it with --input-shape NAME:D0xD1x..; else run without the "
            "data-driven steps (--criterion l1 --recover none) or report the model to "
            "ONNX Runtime")


def guarded(func: Callable, *args: Any, what: str) -> Any:
    """Rule 1 (rule 2: in process when isolation is off)."""
    if not isolation_enabled(args):
        return func(*args)
    from onnxprune.training.isolate import run_isolated

    return run_isolated(call, func, args, what=what, hint=_hint())


def preflight(func: Callable, *args: Any, what: str) -> bool:
    """Rule 3; True when the pre-flight ran (and passed)."""
    if not isolation_enabled(args):
        return False
    logger.info("%s: pre-flight of the ONNX Runtime sessions in a child process", what)
    guarded(func, *args, what=what)
    return True
