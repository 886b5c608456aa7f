"""The digits fixture end to end: criteria, recovery and allocation on real data."""

from __future__ import annotations

import numpy as np
import pytest

from onnxprune.compress import compress
from onnxprune.graph.runtime import make_session
from tests.calibration.models import DIGITS, DIGITS_TEST, DIGITS_TRAIN


def test_accuracy(path) -> float:
    test = np.load(DIGITS_TEST)
    logits = make_session(str(path)).run(None, {"input": test["input"]})[0]
    return float((logits.argmax(axis=1) == test["labels"]).mean())


test_accuracy.__test__ = False


def pruned_accuracy(tmp_path, **options) -> float:
    out = tmp_path / "pruned.onnx"
    compress(DIGITS, 0.5, output=out, data=str(DIGITS_TRAIN), max_samples=512, steps=1,
             **{"round_to": 1, **options})
    return test_accuracy(out)


def test_fixture_accuracy_matches_the_manifest():
    import json

    manifest = json.loads((DIGITS.parent / "manifest.json").read_text())
    entry = next(e for e in manifest if e["file"] == DIGITS.name)
    assert test_accuracy(DIGITS) == pytest.approx(float(entry["metadata"]["test_accuracy"]),
                                                  abs=5e-4)


@pytest.mark.parametrize("criterion", ["random", "l1", "activation", "taylor"])
def test_lsq_recovers_to_within_three_points_without_training(tmp_path, criterion):
    original = test_accuracy(DIGITS)
    none = pruned_accuracy(tmp_path, criterion=criterion, recover="none")
    lsq = pruned_accuracy(tmp_path, criterion=criterion, recover="lsq")
    assert lsq >= original - 0.03, (criterion, original, lsq)
    assert lsq > none + 0.05, (criterion, none, lsq)


def test_data_driven_criteria_beat_random_without_recovery(tmp_path):
    random = np.mean([pruned_accuracy(tmp_path, criterion="random", recover="none", seed=s)
                      for s in range(3)])
    for criterion in ("activation", "taylor"):
        assert pruned_accuracy(tmp_path, criterion=criterion, recover="none") > random + 0.05


def test_sensitivity_allocation_beats_the_global_threshold(tmp_path):
    threshold = pruned_accuracy(tmp_path, criterion="l1", recover="none")
    allocated = pruned_accuracy(tmp_path, criterion="l1", recover="none",
                                allocation="sensitivity")
    assert allocated > threshold + 0.1


def test_auto_choices_with_data(tmp_path):
    result = compress(DIGITS, 0.5, output=tmp_path / "p.onnx", data=str(DIGITS_TRAIN), steps=1,
                      max_samples=128)
    calibration = result.calibration
    assert calibration["criterion"] == "taylor" and calibration["recover"] == "bias"
    assert calibration["samples"] == 128 and not calibration["synthetic"]
    assert calibration["recovery"]["layers"]
    assert result.options["criterion"] == "auto"


def test_auto_choices_without_data_are_data_free(tmp_path):
    result = compress(DIGITS, 0.5, output=tmp_path / "p.onnx")
    calibration = result.calibration
    assert calibration["criterion"] == "l1" and calibration["recover"] == "bias"
    assert calibration["synthetic"] and calibration["data_free"]
    assert calibration["recovery"]["data_free"]
    assert result.accuracy == {"measured": False, "message": result.accuracy["message"]}
