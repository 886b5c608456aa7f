"""The task metric of original and result in every flow; never a collapse silently."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from click.testing import CliRunner

from onnxprune import compress
from onnxprune.calibration.accuracy import DEFAULT_MAX_DROP, accuracy_section, task_metric
from onnxprune.cli import main
from onnxprune.errors import AccuracyDropError, ExitCode
from onnxprune.recovery.choose import choose_recovery
from onnxprune.training.outcome import choose_flow
from tests.calibration.test_data_free import bn_folded_cnn


@pytest.fixture
def folded(tmp_path):
    path = tmp_path / "folded.onnx"
    onnx.save(bn_folded_cnn(), path)
    return path


def npz(tmp_path, name: str, samples: int, seed: int) -> str:
    path = tmp_path / f"{name}.npz"
    images = np.random.default_rng(seed).standard_normal((samples, 3, 8, 8)).astype(np.float32)
    np.savez(path, images=images)
    return str(path)


def run(*args: str):
    return CliRunner().invoke(main, ["compress", *map(str, args)])


def test_collapse_on_held_out_data_exits_11_and_writes_nothing(tmp_path, folded):
    out = tmp_path / "out.onnx"
    done = run(folded, "-t", "0.3", "--criterion", "l1", "--recover", "none", "--eval-data",
               npz(tmp_path, "held", 64, 1), "-o", out)
    assert done.exit_code == ExitCode.ACCURACY == 11, done.output
    assert "agreement with the original" in done.output and "--accept-drop" in done.output
    assert not out.exists() and not (tmp_path / "out.onnx.report.json").exists()


def test_accepted_collapse_is_written_and_said_loudly(tmp_path, folded):
    out = tmp_path / "out.onnx"
    args = (folded, "-t", "0.3", "--criterion", "l1", "--recover", "none", "--eval-data",
            npz(tmp_path, "held", 64, 1), "-o", out, "--accept-drop")
    shown = run(*args)
    assert shown.exit_code == 0, shown.output
    assert "WARNING" in shown.output and "MORE THAN THE BUDGET" in shown.output
    document = json.loads(run(*args, "--json").stdout)
    accuracy = document["accuracy"]
    assert accuracy["exceeded"] and accuracy["accepted"] and accuracy["held_out"]
    assert accuracy["drop"] > DEFAULT_MAX_DROP and accuracy["original"] == 1.0
    assert json.loads((tmp_path / "out.onnx.report.json").read_text())["accuracy"]["exceeded"]


def test_one_shot_with_eval_data_shows_both_metrics_in_summary_json_and_html(tmp_path,
                                                                            folded):
    out, page = tmp_path / "out.onnx", tmp_path / "report.html"
    held = npz(tmp_path, "held", 64, 1)
    shown = run(folded, "-t", "0.3", "--eval-data", held, "-o", out, "--report", page)
    assert shown.exit_code == 0, shown.output
    assert "agreement with the original on 64 held-out samples" in shown.output
    report = json.loads((tmp_path / "out.onnx.report.json").read_text())
    accuracy = report["accuracy"]
    assert accuracy["measured"] and accuracy["original"] == 1.0
    assert accuracy["result"] >= 1.0 - DEFAULT_MAX_DROP and not accuracy["exceeded"]
    text = page.read_text()
    assert "<h2>Accuracy</h2>" in text and f"{accuracy['result']:.4f}" in text
    assert "Fidelity per output and part" in text


def test_recover_auto_keeps_the_better_of_bias_and_lsq_on_held_out_data(tmp_path, folded):
    result = compress(folded, 0.3, criterion="l1", data=npz(tmp_path, "calib", 64, 2),
                      eval_data=npz(tmp_path, "held", 64, 1), steps=1, write=False,
                      report=False)
    recovery = result.calibration["recovery"]
    candidates = recovery["candidates"]
    assert set(candidates) == {"bias", "lsq"}
    assert recovery["chosen"] == result.calibration["recover"]
    assert candidates[recovery["chosen"]] == max(candidates.values())
    assert result.accuracy["result"] == pytest.approx(candidates[recovery["chosen"]], abs=1e-6)
    assert any(n.startswith("recover auto:") for n in result.notes)


def test_eval_data_too_small_to_measure_is_a_data_error(tmp_path, folded):
    done = run(folded, "-t", "0.3", "--eval-data", npz(tmp_path, "tiny", 8, 1), "-o",
               tmp_path / "o.onnx")
    assert done.exit_code == ExitCode.DATA, done.output
    assert "32" in done.output and "--eval-data" in done.output


def test_task_metric_prefers_accuracy_then_agreement_then_cosine():
    assert task_metric({"accuracy": 0.5, "reference_accuracy": 0.9, "agreement": 0.7}) == \
        ("accuracy", 0.5, 0.9)
    assert task_metric({"agreement": 0.7, "cosine": 0.1})[:2] == \
        ("agreement with the original", 0.7)
    assert task_metric({"cosine": 0.25}) == ("cosine similarity to the original", 0.75, 1.0)
    section = accuracy_section({"agreement": 0.5}, data="d", samples=40, held_out=False,
                               max_drop=None, accepted=False)
    assert not section["exceeded"]  # not held-out: shown, never an exit code


def test_choices_keep_the_higher_metric():
    assert choose_recovery({"bias": 0.8, "lsq": 0.9})["chosen"] == "lsq"
    assert choose_recovery({"bias": 0.9, "lsq": 0.9})["chosen"] == "bias"
    assert choose_flow(("accuracy", 0.6), ("accuracy", 0.9))["chosen"] == "one-shot"
    assert choose_flow(("accuracy", 0.9), ("accuracy", 0.9))["chosen"] == "progressive"


def test_check_refuses_a_collapse_unless_accepted():
    from onnxprune.calibration.accuracy import check_accuracy

    section = accuracy_section({"agreement": 0.2}, data="d", samples=64, held_out=True,
                               max_drop=None, accepted=False)
    with pytest.raises(AccuracyDropError, match=r"0\.2000 against 1\.0000"):
        check_accuracy(section)
    check_accuracy(accuracy_section({"agreement": 0.2}, data="d", samples=64, held_out=True,
                                    max_drop=None, accepted=True))
