"""Run a function in a child process so a native crash becomes an onnxprune error.

ONNX Runtime training can kill its process (SIGFPE in AveragePool with a dynamic
batch, aborts on unsupported graphs). Rules of :func:`run_isolated`:

1. ``func(*args, report=...)`` runs in a fresh interpreter (``python -m
   onnxprune.training._child FD`` with the parent's ``sys.path``; no inherited
   threads or locks, and unlike ``multiprocessing`` spawn it does not re-import the
   caller's ``__main__``, so scripts without a main guard work). ``func`` must be
   importable by name. On Windows ``multiprocessing`` spawn is used. The child ignores
   SIGINT; Ctrl-C in the parent terminates the child and raises ``KeyboardInterrupt``.
2. The child sends messages through a pipe: log records (re-emitted by the parent's
   logger of the same name), ``report(kind, payload)`` calls (passed to
   ``on_report``), and finally the result or the exception.
3. An :class:`OnnxPruneError` raised in the child is raised again in the parent
   with the same type and message; any other exception becomes an
   :class:`UnsupportedModelError` quoting it.
4. A child killed by a signal, or exiting without a result, raises
   :class:`UnsupportedModelError` naming the signal (e.g. SIGFPE) and what was
   being done.
"""

from __future__ import annotations

__all__ = ["child_main", "run_isolated"]

import contextlib
import logging
import multiprocessing
import multiprocessing.connection
import os
import pickle
import signal
import subprocess
import sys
import traceback
from collections.abc import Callable
from typing import Any

from onnxprune.errors import OnnxPruneError, UnsupportedModelError

logger = logging.getLogger(__name__)


class _PipeHandler(logging.Handler):
    def __init__(self, conn: Any) -> None:
        super().__init__(logging.INFO)
        self.conn = conn

    def emit(self, record: logging.LogRecord) -> None:
        if record.levelno < logging.WARNING and not record.name.startswith("onnxprune"):
            return
        with contextlib.suppress(Exception):  # a closed pipe must not break the work
            self.conn.send(("log", record.name, record.levelno, record.getMessage()))


def _child(conn: Any, func: Callable, args: tuple) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    root = logging.getLogger()
    root.handlers[:] = [_PipeHandler(conn)]
    root.setLevel(logging.INFO)
    logging.getLogger("onnxprune").setLevel(logging.INFO)

    def report(kind: str, payload: Any) -> None:
        conn.send(("report", kind, payload))

    try:
        result = func(*args, report=report)
    except BaseException as exc:  # every failure goes back to the parent
        try:
            pickle.dumps(exc)
            conn.send(("error", exc, traceback.format_exc()))
        except Exception:
            conn.send(("error", None, f"{type(exc).__name__}: {exc}\n{traceback.format_exc()}"))
        return
    conn.send(("result", result))


def _signal_name(code: int) -> str:
    try:
        return signal.Signals(-code).name
    except ValueError:
        return f"signal {-code}"


class _Child:
    """The child process, started as a module (POSIX) or by ``multiprocessing``."""

    def __init__(self, func: Callable, args: tuple) -> None:
        if os.name == "posix":
            self.conn, theirs = multiprocessing.Pipe(duplex=True)
            env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
            self.process = subprocess.Popen(
                [sys.executable, "-m", "onnxprune.training._child", str(theirs.fileno())],
                pass_fds=[theirs.fileno()], env=env)
            theirs.close()
            self.conn.send((func, args))
        else:
            context = multiprocessing.get_context("spawn")
            self.conn, theirs = context.Pipe(duplex=True)
            self.process = context.Process(target=_child, args=(theirs, func, args),
                                           daemon=True)
            self.process.start()
            theirs.close()

    def alive(self) -> bool:
        if isinstance(self.process, subprocess.Popen):
            return self.process.poll() is None
        return self.process.is_alive()

    def exitcode(self) -> int | None:
        if isinstance(self.process, subprocess.Popen):
            return self.process.returncode
        return self.process.exitcode

    def stop(self, force: bool = False) -> None:
        if not self.alive():
            return
        if force:
            self.process.kill()
        else:
            self.process.terminate()

    def wait(self, timeout: float) -> None:
        try:
            if isinstance(self.process, subprocess.Popen):
                self.process.wait(timeout)
            else:
                self.process.join(timeout)
        except subprocess.TimeoutExpired:
            pass


_TRAINING_HINT = ("the model or an op in it is not supported by ONNX Runtime training on "
                  "this machine. Freeze the layers around the failing op (frozen=...) or run "
                  "without fine-tuning")


def run_isolated(func: Callable, *args: Any, what: str = "fine-tuning",
                 on_report: Callable[[str, Any], None] | None = None,
                 hint: str = _TRAINING_HINT) -> Any:
    """``func(*args, report=...)`` in a child process (rules 1-4); ``hint`` says what
    to try after a crash."""
    child = _Child(func, args)
    outcome: tuple | None = None
    try:
        while outcome is None:
            if child.conn.poll(0.2):
                try:
                    message = child.conn.recv()
                except EOFError:
                    break
                outcome = _handle(message, on_report)
            elif not child.alive() and not child.conn.poll(0):
                break
    except KeyboardInterrupt:
        child.stop()
        child.wait(5)
        raise
    finally:
        child.wait(10)
        if child.alive():
            child.stop(force=True)
            child.wait(10)
        child.conn.close()
    if outcome is None:
        code = child.exitcode()
        cause = _signal_name(code) if code is not None and code < 0 else f"exit code {code}"
        raise UnsupportedModelError(f"ONNX Runtime crashed during {what} ({cause}); {hint}")
    kind, payload, detail = outcome
    if kind == "result":
        return payload
    if isinstance(payload, OnnxPruneError):
        raise payload
    if isinstance(payload, BaseException):
        raise UnsupportedModelError(
            f"{what} failed: {type(payload).__name__}: {payload}") from payload
    raise UnsupportedModelError(f"{what} failed: {detail.strip().splitlines()[0]}")


def _handle(message: tuple, on_report: Callable | None) -> tuple | None:
    kind = message[0]
    if kind == "log":
        _, name, level, text = message
        logging.getLogger(name).log(level, "%s", text)
        return None
    if kind == "report":
        if on_report is not None:
            on_report(message[1], message[2])
        return None
    if kind == "result":
        return ("result", message[1], None)
    return ("error", message[1], message[2])


def child_main(argv: list[str]) -> None:
    """Body of ``python -m onnxprune.training._child FD`` (rule 1)."""
    conn = multiprocessing.connection.Connection(int(argv[0]))
    func, args = conn.recv()
    _child(conn, func, args)
    conn.close()
