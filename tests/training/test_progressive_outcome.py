"""What a progressive run hands back: held-out checks, the flow choice, exit 11."""

from __future__ import annotations

import json

import onnx
import pytest
from click.testing import CliRunner

from onnxprune.cli import main
from onnxprune.errors import ExitCode
from onnxprune.training.ort import training_available
from onnxprune.training.outcome import PROGRESSIVE_MIN_SAMPLES
from tests.calibration.test_accuracy import npz
from tests.calibration.test_data_free import bn_folded_cnn

pytestmark = pytest.mark.skipif(not training_available(),
                                reason="progressive runs need the ONNX Runtime training build")


@pytest.fixture
def folded(tmp_path):
    path = tmp_path / "folded.onnx"
    onnx.save(bn_folded_cnn(), path)
    return path


def run(*args):
    return CliRunner().invoke(main, ["compress", *map(str, args)])


def test_held_out_split_below_32_samples_is_refused_with_advice(tmp_path, folded):
    out = tmp_path / "o.onnx"
    done = run(folded, "-t", "0.3", "--steps", "2", "--train-steps", "1", "--data",
               npz(tmp_path, "d", 100, 0), "-o", out)
    assert done.exit_code == ExitCode.DATA, done.output
    assert "10 held-out sample(s)" in done.output and "--holdout" in done.output
    assert not out.exists()


def test_small_data_makes_one_shot_the_default_and_says_why(tmp_path, folded):
    out = tmp_path / "o.onnx"
    done = run(folded, "-t", "0.3", "--data", npz(tmp_path, "d", 64, 0), "-o", out, "--json")
    assert done.exit_code == 0, done.output
    document = json.loads(done.stdout)
    assert document["flow"]["chosen"] == "one-shot" and document["steps"] is None
    assert document["flow"]["min_samples"] == PROGRESSIVE_MIN_SAMPLES
    assert "one-shot with the best recovery" in document["flow"]["message"]
    assert document["accuracy"]["measured"] is False  # no --eval-data: said, not hidden


def test_progressive_run_that_collapses_exits_11(tmp_path, folded):
    out = tmp_path / "o.onnx"
    done = run(folded, "-t", "0.3", "--steps", "2", "--train-steps", "1", "--lr", "1e-6",
               "--criterion", "l1", "--recover", "none", "--data", npz(tmp_path, "d", 96, 0),
               "--eval-data", npz(tmp_path, "held", 64, 1), "-o", out)
    assert done.exit_code == ExitCode.ACCURACY, done.output
    assert "nothing was written" in done.output and "held-out" in done.output
    assert not out.exists()
