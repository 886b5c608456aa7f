"""The ``onnxprune`` command line.

Rules:

1. ``--json`` prints exactly one JSON document on stdout; logs and progress go to
   stderr.
2. Errors the user can fix print ``error: <message>`` on stderr and exit with the
   code of their class (see :class:`onnxprune.errors.ExitCode`); Ctrl-C exits 130.
   Unexpected errors exit 1 with a one-line message (``--debug`` shows the traceback).
3. Each command lives in its own module of this package and registers itself on
   ``main``.
"""

from __future__ import annotations

__all__ = ["main"]

import click

from onnxprune._version import __version__
from onnxprune.cli.common import setup_logging


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="onnxprune")
@click.option("-v", "--verbose", count=True, help="More log output on stderr (-vv for debug).")
@click.option("--debug", is_flag=True, help="Show tracebacks instead of one-line errors.")
def main(verbose: int, debug: bool) -> None:
    """Structural pruning of ONNX models: analyze, then compress."""
    setup_logging(verbose)


def _register() -> None:
    from onnxprune.cli import analyze, bench, compress, export_mobile, sensitivity, sweep

    for module in (analyze, compress, bench, export_mobile, sensitivity, sweep):
        main.add_command(module.command)


_register()
