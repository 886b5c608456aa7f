"""Progress bars of progressive runs (drawn only on an interactive stderr)."""

from __future__ import annotations

import io

from rich.console import Console
from rich.progress import Progress

from onnxprune.cli import progress as progress_module
from onnxprune.cli.progress import _Bars, step_progress


def test_bars_follow_steps_and_fine_tuning_batches():
    console = Console(file=io.StringIO(), force_terminal=True, width=120)
    with Progress(console=console) as shown:
        bars = _Bars(shown)
        bars({"phase": "step", "step": 1, "steps": 3, "target": 0.3})
        bars({"phase": "train", "step": 1, "batch": 4, "batches": 10, "epoch": 1,
              "loss": 0.5})
        steps, train = shown.tasks[bars.steps], shown.tasks[bars.train]
        assert (steps.total, steps.completed) == (3, 0)
        assert (train.total, train.completed, train.visible) == (10, 4, True)
        assert "epoch 1" in train.description and "0.5000" in train.description
        bars({"phase": "evaluate", "step": 1})
        assert "evaluating" in shown.tasks[bars.steps].description
        bars({"phase": "step", "step": 2, "steps": 3, "target": 0.5})
        assert shown.tasks[bars.steps].completed == 1
        assert not shown.tasks[bars.train].visible
        bars({"phase": "step", "step": "final", "steps": 3})
        assert "final" in shown.tasks[bars.steps].description
        bars.finish()
        assert shown.tasks[bars.steps].completed == 3


def test_no_bars_without_a_terminal_or_with_json(monkeypatch):
    with step_progress(False) as callback:
        assert callback is None
    monkeypatch.setattr(progress_module, "stderr", Console(file=io.StringIO()))
    with step_progress(True) as callback:
        assert callback is None
