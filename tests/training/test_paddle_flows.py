"""The Paddle fixtures (opset 11, dynamic H/W/width as paddle2onnx writes them) go through
the data-driven flows: one-shot calibrated (`--steps 1 --data`) and progressive with
fine-tuning (`--steps 2 --train-steps 2`), with the fixture's own 32 calibration samples
(also given as `--eval-data`: a held-out split of 32 samples would be too small to
measure, which the tool refuses)."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from onnxprune.cli import main
from tests.conftest import MODELS

THIRDPARTY = MODELS / "thirdparty"
DIGITS_TRAIN = MODELS.parent / "data" / "digits_train.npz"
PADDLE = sorted(p.name for p in THIRDPARTY.glob("*.paddle*.onnx"))


def _data(name: str) -> str:
    stem = name.split(".")[0]
    return str(DIGITS_TRAIN if stem == "digits_lcnet" else THIRDPARTY / "data" / f"{stem}.npz")


def _run(tmp_path, name: str, *flags: str) -> dict:
    data = _data(name)
    args = ["compress", str(THIRDPARTY / name), "-t", "0.3", "-o", str(tmp_path / "p.onnx"),
            "--data", data, "--json", *flags]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


@pytest.mark.parametrize("name", PADDLE)
def test_one_shot_calibrated(tmp_path, name):
    report = _run(tmp_path, name, "--steps", "1")
    assert abs(report["achieved"] - 0.3) <= 0.05
    assert report["verification"]["outputs_match"]


@pytest.mark.parametrize("name", [n for n in PADDLE if "_opt" not in n])
def test_progressive_with_fine_tuning(tmp_path, name):
    data = _data(name)
    report = _run(tmp_path, name, "--steps", "2", "--train-steps", "2", "--eval-data", data,
                  "--accept-drop")
    assert len(report["steps"]) == 2
    assert report["accuracy"]["measured"]
    assert all(step["trainable_fraction"] >= 0.99 for step in report["steps"])
