"""Progress bars for progressive pruning: steps, fine-tuning batches, evaluation.

Rule: on an interactive stderr (and without ``--json``) a rich progress display shows
two bars with ETA: the steps of the schedule and the optimizer steps of the current
fine-tuning (with its epoch and loss). Elsewhere (pipelines, logs) nothing is drawn;
``-v`` logs a line per finished step instead.
"""

from __future__ import annotations

__all__ = ["step_progress"]

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


class _Bars:
    """Turns the progress events of ``compress`` into two progress bars."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.steps = progress.add_task("steps", total=None)
        self.train = progress.add_task("fine-tuning", total=None, visible=False)

    def __call__(self, info: dict) -> None:
        phase = info.get("phase")
        if phase == "step":
            self._step(info)
        elif phase == "train":
            self._train(info)
        elif phase == "evaluate":
            self.progress.update(self.steps, description=f"step {info['step']}: evaluating")

    def _step(self, info: dict) -> None:
        step, total = info["step"], info["steps"]
        if step == "final":
            self.progress.update(self.steps, description="final fine-tune")
        else:
            self.progress.update(self.steps, total=total, completed=step - 1,
                                 description=f"step {step}/{total}: pruning to "
                                             f"{info['target']:.3f}")
        self.progress.update(self.train, visible=False, completed=0)

    def _train(self, info: dict) -> None:
        self.progress.update(self.train, visible=True, total=info["batches"],
                             completed=info["batch"],
                             description=f"  fine-tune epoch {info['epoch']}, loss "
                                         f"{info['loss']:.4f}")

    def finish(self) -> None:
        task = self.progress.tasks[self.steps]
        if task.total is not None:
            self.progress.update(self.steps, completed=task.total, description="steps done")


@contextlib.contextmanager
def step_progress(enabled: bool) -> Iterator[Callable[[dict], None] | None]:
    """A progress callback for ``compress(progress=...)``, or None when not drawn."""
    if not enabled or not stderr.is_terminal:
        yield None
        return
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn())
    with Progress(*columns, console=stderr, transient=False) as progress:
        bars = _Bars(progress)
        yield bars
        bars.finish()
