"""A progress bar for independent tasks (sensitivity cells): done/total with ETA.

Rule: on an interactive stderr (and without ``--json``) one rich bar shows the tasks
finished out of the total, elapsed time and ETA, fed by the ``progress(done, total)``
callback of :mod:`onnxprune.parallel`; elsewhere nothing is drawn. Ray's own output
goes to the log, never to this bar.
"""

from __future__ import annotations

__all__ = ["task_progress"]

import contextlib
from collections.abc import Callable, Iterator

from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from onnxprune.cli.common import stderr


@contextlib.contextmanager
def task_progress(description: str, enabled: bool,
                  ) -> Iterator[Callable[[int, int], None] | None]:
    """A ``progress(done, total)`` callback drawing the bar, or None when not drawn."""
    if not enabled or not stderr.is_terminal:
        yield None
        return
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn())
    with Progress(*columns, console=stderr, transient=False) as bar:
        task = bar.add_task(description, total=None)

        def update(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        yield update
