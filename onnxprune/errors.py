"""Errors a user can hit, each with the exit code the CLI turns it into.

Rule: every failure that is the user's to fix (bad path, bad model, unreachable
target, missing runtime) is an :class:`OnnxPruneError` subclass whose message says
what happened and what to do. The CLI prints ``error: <message>`` on one line and
exits with the class's ``exit_code``; it never shows a traceback for these.
"""

from __future__ import annotations

__all__ = [
    "AccuracyDropError",
    "DataError",
    "ExitCode",
    "FrozenError",
    "InvalidModelError",
    "OnnxPruneError",
    "OutputError",
    "RuntimeMissingError",
    "SweepPointsError",
    "UnreachableTargetError",
    "UnsupportedModelError",
    "UsageError",
    "VerificationError",
]

import enum


class ExitCode(enum.IntEnum):
    """Process exit codes of the ``onnxprune`` command (documented in the README)."""

    OK = 0
    INTERNAL = 1
    USAGE = 2
    INVALID_MODEL = 3
    UNSUPPORTED_MODEL = 4
    UNREACHABLE_TARGET = 5
    DATA = 6
    RUNTIME_MISSING = 7
    VERIFICATION = 8
    OUTPUT = 9
    FROZEN = 10
    ACCURACY = 11
    SWEEP_POINTS = 12  # onnxprune sweep: some points failed (every other point was written)
    INTERRUPTED = 130


class OnnxPruneError(Exception):
    """Base class: a failure with a message meant for the user."""

    exit_code: ExitCode = ExitCode.INTERNAL


class UsageError(OnnxPruneError):
    """An option or argument is out of range or inconsistent."""

    exit_code = ExitCode.USAGE


class InvalidModelError(OnnxPruneError):
    """The file is missing, unreadable, or not a valid ONNX model."""

    exit_code = ExitCode.INVALID_MODEL


class UnsupportedModelError(OnnxPruneError):
    """The model is valid but outside what onnxprune can handle (opset, IR, no prunable group)."""

    exit_code = ExitCode.UNSUPPORTED_MODEL


class UnreachableTargetError(OnnxPruneError):
    """The requested target cannot be reached; ``maximum`` holds the largest reachable value."""

    exit_code = ExitCode.UNREACHABLE_TARGET

    def __init__(self, message: str, maximum: float) -> None:
        super().__init__(message)
        self.maximum = maximum


class DataError(OnnxPruneError):
    """Calibration/training data does not match the model."""

    exit_code = ExitCode.DATA


class RuntimeMissingError(OnnxPruneError):
    """A feature needs an ONNX Runtime flavour that is not installed."""

    exit_code = ExitCode.RUNTIME_MISSING


class VerificationError(OnnxPruneError):
    """The rewritten model failed a check (checker, shapes, runtime); nothing was written."""

    exit_code = ExitCode.VERIFICATION


class OutputError(OnnxPruneError):
    """The output could not be written (same path as input, folder missing, disk full)."""

    exit_code = ExitCode.OUTPUT


class FrozenError(OnnxPruneError):
    """Fine-tuning would leave more than 10% of the prunable parameters frozen (ops ONNX
    Runtime training cannot differentiate); ``--allow-frozen`` accepts it."""

    exit_code = ExitCode.FROZEN


class AccuracyDropError(OnnxPruneError):
    """The result's held-out task metric fell more than the budget below the original's
    (``--max-drop``, default 0.05); nothing was written unless ``--accept-drop``."""

    exit_code = ExitCode.ACCURACY


class SweepPointsError(OnnxPruneError):
    """``onnxprune sweep``: one or more points failed; the passed points, the JSON and the
    HTML page were written and every failed row names its own error and exit code."""

    exit_code = ExitCode.SWEEP_POINTS
