"""Click options choosing the executor of independent tasks (:mod:`onnxprune.parallel`)."""

from __future__ import annotations

__all__ = ["EXECUTOR_OPTION_NAMES", "executor_options"]

from collections.abc import Callable
from typing import Any

import click

# option keys these flags set (same names in CompressOptions and recipes)
EXECUTOR_OPTION_NAMES = ["workers", "ray_address"]


def executor_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """Add ``--workers`` and ``--ray-address`` (neither: tasks run in process)."""
    options = [
        click.option("--workers", type=click.IntRange(min=1), default=None,
                     help="Run the sensitivity cells on a local Ray instance with N workers "
                          "(started and stopped by onnxprune; needs onnxprune[distributed]).",
                     ),
        click.option("--ray-address", "ray_address", default=None, metavar="ADDR",
                     help="Run the sensitivity cells on an existing Ray cluster (e.g. auto, "
                          "ray://head:10001; needs onnxprune[distributed])."),
    ]
    for option in reversed(options):
        func = option(func)
    return func
