"""Shared CLI plumbing: logging, error guard, JSON output, consoles."""

from __future__ import annotations

__all__ = ["setup_logging", "guard", "emit_json", "stdout", "stderr", "quiet_status"]

import contextlib
import functools
import json
import logging
import sys
from collections.abc import Callable, Iterator
from typing import Any

import click
from rich.console import Console

from onnxprune.errors import ExitCode, OnnxPruneError

stdout = Console(soft_wrap=True)
stderr = Console(stderr=True, soft_wrap=True)


def setup_logging(verbose: int) -> None:
    level = logging.WARNING - 10 * min(verbose, 2)
    logging.basicConfig(level=level, stream=sys.stderr,
                        format="%(levelname)s %(name)s: %(message)s")


def _fail(code: ExitCode, message: str) -> None:
    stderr.print(message, markup=False, highlight=False)
    sys.exit(int(code))


def guard(func: Callable[..., Any]) -> Callable[..., Any]:
    """Turn project errors into one line and an exit code (package rule 2)."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        debug = click.get_current_context().find_root().params.get("debug", False)
        try:
            return func(*args, **kwargs)
        except OnnxPruneError as exc:
            if debug:
                raise
            _fail(exc.exit_code, f"error: {exc}")
        except KeyboardInterrupt:
            _fail(ExitCode.INTERRUPTED, "interrupted: nothing was written")
        except Exception as exc:  # last resort: still one line, still an exit code
            if debug:
                raise
            _fail(ExitCode.INTERNAL, f"internal error: {type(exc).__name__}: {exc} "
                                     "(rerun with --debug for the traceback)")

    return wrapper


def _json_default(value: Any) -> Any:
    if hasattr(value, "tolist"):
        return value.tolist()
    return str(value)


def emit_json(document: dict) -> None:
    click.echo(json.dumps(document, indent=2, default=_json_default))


@contextlib.contextmanager
def quiet_status(message: str, enabled: bool) -> Iterator[None]:
    """A spinner on stderr for interactive runs; nothing when ``enabled`` is False."""
    if not enabled or not stderr.is_terminal:
        yield
        return
    with stderr.status(message, spinner="dots"):
        yield
