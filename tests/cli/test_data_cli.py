"""CLI: --data and friends on compress, the sensitivity command, errors and exit codes."""

from __future__ import annotations

import json
import sys

import numpy as np
from click.testing import CliRunner

from onnxprune.cli import main
from onnxprune.errors import ExitCode
from tests.calibration.models import DIGITS, DIGITS_TRAIN
from tests.conftest import MODELS


def run(*args: str):
    return CliRunner().invoke(main, [str(a) for a in args])


def test_compress_with_data_recovery_and_sensitivity_allocation(tmp_path):
    out = tmp_path / "p.onnx"
    result = run("compress", DIGITS, "-t", "0.5", "-o", out, "--data", DIGITS_TRAIN,
                 "--max-samples", "128", "--batch-size", "64", "--criterion", "activation",
                 "--recover", "lsq", "--allocation", "sensitivity", "--ratios", "0.2,0.6",
                 "--json")
    assert result.exit_code == 0, result.output
    document = json.loads(result.output)
    assert out.is_file()
    calibration = document["calibration"]
    assert calibration["criterion"] == "activation" and calibration["recover"] == "lsq"
    assert calibration["samples"] == 128
    assert calibration["sensitivity"]["ratios"] == [0.2, 0.6]
    assert document["options"]["allocation"] == "sensitivity"
    assert document["achieved"] >= 0.5


def test_compress_data_error_is_one_line_with_exit_code(tmp_path):
    np.savez(tmp_path / "bad.npz", pixels=np.zeros((2, 1, 8, 8), np.float32))
    result = run("compress", DIGITS, "-t", "0.5", "-o", tmp_path / "p.onnx",
                 "--data", tmp_path / "bad.npz")
    assert result.exit_code == ExitCode.DATA
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and "no array for model input 'input' (found: pixels)" in lines[0]
    assert not (tmp_path / "p.onnx").exists()


def test_recipe_carries_the_data_options(tmp_path):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(f"model: {DIGITS}\ntarget: 0.4\ndata: {DIGITS_TRAIN}\nmax_samples: 64\n"
                      "recover: bias\ncriterion: apoz\n")
    result = run("compress", "--config", recipe, "-o", tmp_path / "p.onnx", "--json")
    assert result.exit_code == 0, result.output
    calibration = json.loads(result.output)["calibration"]
    assert (calibration["criterion"], calibration["recover"], calibration["samples"]) == \
        ("apoz", "bias", 64)


def test_unknown_recipe_key_lists_the_new_options(tmp_path):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("target: 0.4\nrecovery: lsq\n")
    result = run("compress", DIGITS, "--config", recipe)
    assert result.exit_code == ExitCode.USAGE
    assert "unknown option 'recovery'" in result.output and "recover" in result.output


def test_sensitivity_command_writes_json_and_plot(tmp_path):
    result = run("sensitivity", DIGITS, "--data", DIGITS_TRAIN, "--max-samples", "64",
                 "--ratios", "0.25,0.5", "-o", tmp_path / "s.json", "--plot", tmp_path / "s.png")
    assert result.exit_code == 0, result.output
    document = json.loads((tmp_path / "s.json").read_text())
    assert len(document["groups"]) == 4 and document["ratios"] == [0.25, 0.5]
    assert document["baseline_accuracy"] is not None
    assert "accuracy" in document["groups"][0]["points"][0]
    assert (tmp_path / "s.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "/features/features.0/Conv" in result.output or "features" in result.output


def test_sensitivity_json_on_stdout(tmp_path):
    result = run("sensitivity", DIGITS, "--max-samples", "4", "--ratios", "0.5", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["num_samples"] == 4


def test_plot_without_matplotlib_is_an_actionable_error(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    result = run("sensitivity", DIGITS, "--max-samples", "2", "--ratios", "0.5",
                 "--plot", tmp_path / "s.png")
    assert result.exit_code == ExitCode.RUNTIME_MISSING
    assert "pip install" in result.output and "matplotlib" in result.output


def test_image_folder_through_the_cli(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    for label in ("a", "b"):
        (tmp_path / "imgs" / label).mkdir(parents=True)
        for k in range(2):
            Image.fromarray(rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)).save(
                tmp_path / "imgs" / label / f"{k}.jpg")
    result = run("sensitivity", MODELS / "resnet_basic.ts.onnx", "--data", tmp_path / "imgs",
                 "--image-size", "32", "--mean", "0.485,0.456,0.406",
                 "--std", "0.229,0.224,0.225", "--ratios", "0.5", "--json")
    assert result.exit_code == 0, result.output
    document = json.loads(result.output)
    assert document["num_samples"] == 4 and document["groups"]


def test_bad_image_option_values(tmp_path):
    result = run("sensitivity", DIGITS, "--image-size", "a,b")
    assert result.exit_code == 2 and "expected H,W" in result.output
