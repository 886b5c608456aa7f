"""Progressive runs: work directory and --resume, --max-drop, --train-steps, held-out data,
progress events."""

from __future__ import annotations

import importlib
import json

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from onnx import numpy_helper

from onnxprune.cli import main
from onnxprune.compress import compress
from onnxprune.errors import ExitCode, UsageError
from onnxprune.pipeline import steps as progressive
from tests.calibration.models import DIGITS, DIGITS_TEST, DIGITS_TRAIN

FAST = {"steps": 3, "train_steps": 12, "data": str(DIGITS_TRAIN), "criterion": "l1",
        "accept_drop": True}  # mechanics, not accuracy: a collapse must not stop them


class _Crash(Exception):
    """Stands for whatever ends a run between steps (Ctrl-C, a killed job)."""


def weights(path) -> dict[str, np.ndarray]:
    return {t.name: numpy_helper.to_array(t) for t in onnx.load(str(path)).graph.initializer}


def test_resume_continues_after_an_interruption_and_matches_a_full_run(tmp_path, monkeypatch):
    full = compress(DIGITS, 0.6, output=tmp_path / "full.onnx", **FAST)
    assert [r["step"] for r in full.steps] == [1, 2, 3]

    calls = []
    original_step = progressive.StepRun._step

    def interrupted(self, step, goal):
        calls.append(step)
        if step == 2:
            raise _Crash("the machine went away")
        return original_step(self, step, goal)

    out = tmp_path / "resumed.onnx"
    monkeypatch.setattr(progressive.StepRun, "_step", interrupted)
    with pytest.raises(_Crash):
        compress(DIGITS, 0.6, output=out, **FAST)
    assert not out.exists()
    state = json.loads((tmp_path / "resumed.onnx.steps" / "state.json").read_text())
    assert [r["row"]["step"] for r in state["records"]] == [1]

    with pytest.raises(UsageError, match="--resume"):  # a fresh run never overwrites it
        compress(DIGITS, 0.6, output=out, **FAST)
    with pytest.raises(UsageError, match="other options"):
        compress(DIGITS, 0.6, output=out, resume=True, **{**FAST, "train_steps": 13})

    def counted(self, step, goal):
        calls.append(step)
        return original_step(self, step, goal)

    monkeypatch.setattr(progressive.StepRun, "_step", counted)
    calls.clear()
    resumed = compress(DIGITS, 0.6, output=out, resume=True, **FAST)
    assert calls == [2, 3]  # step 1 came from the work dir
    assert [r["step"] for r in resumed.steps] == [1, 2, 3]
    for a, b in zip(resumed.steps, full.steps):
        numbers = [k for k, v in b.items() if k != "seconds" and isinstance(v, (int, float))]
        assert {k: a[k] for k in numbers} == pytest.approx({k: b[k] for k in numbers}, rel=1e-5)
        assert {k: v for k, v in a.items() if k not in numbers and k != "seconds"} == \
            {k: v for k, v in b.items() if k not in numbers and k != "seconds"}
    expected, got = weights(tmp_path / "full.onnx"), weights(out)
    assert expected.keys() == got.keys()
    for name in expected:
        np.testing.assert_allclose(got[name], expected[name], rtol=1e-5, atol=1e-6)
    assert any("resumed after step 1" in note for note in resumed.notes)


def test_max_drop_keeps_the_last_step_within_budget(tmp_path):
    """A free run gives each step's accuracy drop; a budget between the first and the
    largest later drop must stop at the first step over it and keep the one before."""
    free = compress(DIGITS, 0.9, output=tmp_path / "free.onnx", eval_data=str(DIGITS_TEST),
                    **FAST)
    reference = free.steps[0]["reference_accuracy"]
    drops = [reference - row["accuracy"] for row in free.steps]
    assert drops[0] < max(drops[1:])
    budget = (drops[0] + max(drops[1:])) / 2
    stop = next(i for i, d in enumerate(drops) if d > budget)  # 0-based, >= 1

    out = tmp_path / "budget.onnx"
    result = compress(DIGITS, 0.9, output=out, eval_data=str(DIGITS_TEST), max_drop=budget,
                      **FAST)
    assert [r["step"] for r in result.steps] == list(range(1, stop + 1))
    assert result.budget["stopped_at"] == stop + 1
    assert result.budget["metric"] == "accuracy"
    assert result.budget["dropped"]["drop"] > budget
    assert all(row["drop"] <= budget for row in result.steps)
    final = result.budget["final"]
    assert final["value_after"] >= final["value_before"] or not final["kept"]
    assert result.achieved == pytest.approx(free.steps[stop - 1]["achieved"], abs=1e-6)
    report = json.loads((tmp_path / "budget.onnx.report.json").read_text())
    assert report["budget"]["stopped_at"] == stop + 1


def test_max_drop_broken_by_the_first_step_exits_5_without_output(tmp_path):
    out = tmp_path / "x.onnx"
    result = CliRunner().invoke(main, [
        "compress", str(DIGITS), "-t", "0.9", "--steps", "3", "--train-steps", "5",
        "--data", str(DIGITS_TRAIN), "--eval-data", str(DIGITS_TEST), "--criterion", "l1",
        "--max-drop", "0", "-o", str(out)])
    assert result.exit_code == ExitCode.UNREACHABLE_TARGET, result.output
    assert "first step" in result.output and "--max-drop" in result.output
    assert not out.exists()


def test_held_out_split_is_neither_trained_on_nor_scored(tmp_path, monkeypatch):
    import onnxprune.training as training

    seen = {}
    real = training.finetune

    def spy(model, data, **kwargs):
        seen["train"] = data
        return real(model, data, **kwargs)

    monkeypatch.setattr(training, "finetune", spy)
    scored = {}
    prune_module = importlib.import_module("onnxprune.pipeline.prune")
    real_open = prune_module.open_calibration

    def spy_open(options, model, data=None, evaluation=None, **kwargs):
        scored["data"] = data
        return real_open(options, model, data, evaluation, **kwargs)

    monkeypatch.setattr(prune_module, "open_calibration", spy_open)
    result = compress(DIGITS, 0.3, output=tmp_path / "h.onnx", steps=1, train_steps=3,
                      data=str(DIGITS_TRAIN), criterion="taylor")
    total = 1257
    held = total - round(total * 0.9)
    assert seen["train"].num_samples == total - held
    assert scored["data"] is seen["train"]
    assert any(f"held out {held} of {total}" in note for note in result.notes)
    assert "accuracy" in result.steps[0]  # evaluated on the held-out labels


def test_train_steps_and_progress_events(tmp_path):
    events = []
    compress(DIGITS, 0.4, output=tmp_path / "t.onnx", steps=2, train_steps=7,
             data=str(DIGITS_TRAIN), eval_data=str(DIGITS_TEST), criterion="l1",
             progress=events.append)
    phases = [(e["phase"], e["step"]) for e in events if e["phase"] != "train"]
    assert phases == [("step", 1), ("evaluate", 1), ("evaluate", 1),
                      ("step", 2), ("evaluate", 2), ("evaluate", 2)]
    for step in (1, 2):
        train = [e for e in events if e["phase"] == "train" and e["step"] == step]
        assert train and train[-1]["batch"] == train[-1]["batches"] == 7
        assert [e["batch"] for e in train] == sorted(e["batch"] for e in train)


@pytest.mark.parametrize("args,message", [
    (["--train-steps", "5", "--finetune-epochs", "1"], "once"),
    (["--max-drop", "0.01", "--steps", "2", "--finetune-epochs", "0"], "evaluation data"),
    (["--resume", "--steps", "1"], "progressive run"),
    (["--holdout", "1.5"], "holdout"),
])
def test_bad_run_options_are_usage_errors(tmp_path, args, message):
    data = [] if "--max-drop" in args else ["--data", str(DIGITS_TRAIN)]
    result = CliRunner().invoke(main, ["compress", str(DIGITS), "-t", "0.5", *data, *args,
                                       "-o", str(tmp_path / "x.onnx")])
    assert result.exit_code == ExitCode.USAGE, result.output
    assert message in result.output


def test_epochs_is_an_alias_of_finetune_epochs(tmp_path):
    out = tmp_path / "e.onnx"
    result = CliRunner().invoke(main, [
        "compress", str(DIGITS), "-t", "0.3", "--epochs", "0.05", "--data",
        str(DIGITS_TRAIN), "--criterion", "l1", "-o", str(out), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["options"]["finetune_epochs"] == 0.05 and report["steps"]
    assert (tmp_path / "e.onnx.steps" / "state.json").is_file()


def test_data_makes_four_progressive_steps_the_default(tmp_path):
    result = compress(DIGITS, 0.3, output=tmp_path / "d.onnx", data=str(DIGITS_TRAIN),
                      finetune_epochs=0.05, criterion="l1")
    assert [row["step"] for row in result.steps] == [1, 2, 3, 4]
    assert result.options["steps"] == 4
    assert any("--steps 4 (the default with --data)" in note for note in result.notes)


def test_default_steps_resolution():
    from onnxprune.options import build_options

    def resolved(available=True, **values):
        return build_options({"target": 0.5, **values}).resolve_steps(available)

    assert resolved()[0].steps == 1 and resolved()[1] is None              # no data
    options, note = resolved(data="d.npz")
    assert options.steps == 4 and "default" in note
    assert resolved(data="d.npz", steps=2)[0].steps == 2                    # explicit
    assert resolved(data="d.npz", finetune_epochs=0)[0].steps == 1          # tuning off
    assert resolved(data="d.npz", mode="unstructured")[0].steps == 1        # sparsity modes
    options, note = resolved(available=False, data="d.npz")
    assert options.steps == 1 and "onnxprune[train]" in note


def test_without_the_training_build_data_means_one_shot(tmp_path, monkeypatch):
    flows_module = importlib.import_module("onnxprune.pipeline.flows")
    monkeypatch.setattr(flows_module, "training_available", lambda: False)
    result = compress(DIGITS, 0.3, output=tmp_path / "o.onnx", data=str(DIGITS_TRAIN),
                      max_samples=64)
    assert result.steps is None and result.options["steps"] == 1
    assert any("onnxprune[train]" in note for note in result.notes)


def test_rerunning_a_finished_run_replaces_its_work_dir(tmp_path):
    """Only an unfinished run blocks its work dir; rerunning the same command after a
    success works (pipelines rerun), and --resume of a finished run writes it again."""
    options = {**FAST, "steps": 2, "train_steps": 3}
    out = tmp_path / "r.onnx"
    first = compress(DIGITS, 0.4, output=out, **options)
    state = tmp_path / "r.onnx.steps" / "state.json"
    assert json.loads(state.read_text())["finished"] is True
    (tmp_path / "r.onnx.steps" / "mine.onnx").write_bytes(b"not onnxprune's")
    second = compress(DIGITS, 0.4, output=out, **options)
    assert [r["params"] for r in second.steps] == [r["params"] for r in first.steps]
    assert (tmp_path / "r.onnx.steps" / "mine.onnx").read_bytes() == b"not onnxprune's"
    again = compress(DIGITS, 0.4, output=out, resume=True, **options)
    assert any("resumed after step 2" in note for note in again.notes)
    assert again.params_after == second.params_after
