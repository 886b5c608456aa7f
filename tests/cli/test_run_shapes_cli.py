"""CLI: third-party-style dynamic dims, detectors that need multiples of 32, data checks,
``--mode N:M``; no raw ONNX Runtime log lines on stderr."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import onnx
import onnxruntime as ort
from click.testing import CliRunner

from onnxprune.cli import main
from onnxprune.errors import ExitCode
from tests.conftest import MODELS, ROOT
from tests.graph.dynamic_models import detector_like, paddle_like


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def run_process(*args) -> subprocess.CompletedProcess:
    """The real command in a child process, so native stderr is captured too."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, "-m", "onnxprune", *map(str, args)],
                          capture_output=True, text=True, env=env, timeout=300)


def _runs(path, shape) -> None:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    session.run(None, {session.get_inputs()[0].name: np.zeros(shape, np.float32)})


def test_paddle_dims_compress_at_a_working_size_and_input_shape_overrides(tmp_model, tmp_path):
    model = tmp_model(paddle_like([-1, 3, 0, "?"]))
    out = tmp_path / "p.onnx"
    result = run("compress", model, "-t", "0.3", "-o", out, "--json")
    assert result.exit_code == 0, result.output
    document = json.loads(result.output)
    assert document["input_shapes"]["x"] == {"shape": [None, 3, 224, 224], "source": "probed"}
    assert document["verification"]["input_shapes"]["x"] == [2, 3, 224, 224]
    _runs(out, (3, 3, 96, 80))  # the pruned model keeps the dynamic axes
    given = run("compress", model, "-t", "0.3", "-o", out, "--json",
                "--input-shape", "x:1x3x48x64")
    assert given.exit_code == 0, given.output
    document = json.loads(given.output)
    assert document["verification"]["input_shapes"]["x"] == [2, 3, 48, 64]
    assert document["options"]["input_shape"] == {"x": [1, 3, 48, 64]}
    bad = run("compress", model, "-t", "0.3", "-o", out, "--input-shape", "x:1x4x48x64")
    assert bad.exit_code == ExitCode.USAGE and "fixes it to 3" in bad.output


def test_batch_minus_one_one_shot_calibration(tmp_model, tmp_path):
    model = tmp_model(paddle_like([-1, 3, -1, -1]))
    np.savez(tmp_path / "d.npz", x=np.random.default_rng(0).random((6, 3, 40, 40), np.float32))
    result = run("compress", model, "-t", "0.3", "-o", tmp_path / "p.onnx", "--steps", "1",
                 "--data", tmp_path / "d.npz", "--batch-size", "4", "--json")
    assert result.exit_code == 0, result.output
    document = json.loads(result.output)
    assert document["input_shapes"]["x"] == {"shape": [None, 3, 40, 40], "source": "data"}
    assert document["calibration"]["samples"] == 6


def test_detector_with_and_without_data_no_native_log_lines(tmp_model, tmp_path):
    model = tmp_model(detector_like(64), "det.onnx")  # H, W must be multiples of 64
    plain = run_process("compress", model, "-t", "0.3", "-o", tmp_path / "a.onnx", "--json")
    assert plain.returncode == 0, plain.stderr
    assert "onnxruntime" not in plain.stderr and "\x1b[" not in plain.stderr
    assert json.loads(plain.stdout)["input_shapes"]["images"]["shape"] == [1, 3, 256, 256]
    np.savez(tmp_path / "small.npz",
             images=np.random.default_rng(0).random((4, 3, 128, 192), np.float32))
    calibrated = run_process("compress", model, "-t", "0.3", "-o", tmp_path / "b.onnx",
                             "--steps", "1", "--data", tmp_path / "small.npz", "--json")
    assert calibrated.returncode == 0, calibrated.stderr
    assert "onnxruntime" not in calibrated.stderr and "\x1b[" not in calibrated.stderr
    document = json.loads(calibrated.stdout)
    assert document["input_shapes"]["images"] == {"shape": [1, 3, 128, 192], "source": "data"}
    assert document["calibration"]["criterion"] in ("taylor", "activation")
    _runs(tmp_path / "b.onnx", (1, 3, 128, 192))


def test_nan_or_inf_in_data_exits_6_naming_input_and_sample(tmp_path):
    digits = MODELS / "digits_cnn.ts.onnx"
    shape = [d.dim_value for d in onnx.load(digits).graph.input[0].type.tensor_type.shape.dim]
    name = onnx.load(digits).graph.input[0].name
    data = np.zeros((8, *shape[1:]), np.float32)
    data[5, 0, 0, 0] = np.nan
    data[6, 0, 0, 0] = np.inf
    np.savez(tmp_path / "bad.npz", **{name: data})
    result = run("compress", digits, "-t", "0.3", "-o", tmp_path / "p.onnx", "--steps", "1",
                 "--data", tmp_path / "bad.npz", "--criterion", "activation")
    assert result.exit_code == ExitCode.DATA, result.output
    assert f"input '{name}' contains NaN or Inf (sample 5 and 1 more" in result.output
    assert not (tmp_path / "p.onnx").exists()


def test_mode_short_form_n_m(tmp_path):
    digits = MODELS / "digits_cnn.ts.onnx"
    result = run("compress", digits, "--mode", "2:4", "-o", tmp_path / "p.onnx", "--json")
    assert result.exit_code == 0, result.output
    options = json.loads(result.output)["options"]
    assert (options["mode"], options["nm"]) == ("n:m", "2:4")
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"model: {digits}\nmode: '1:4'\n")
    result = run("compress", "--config", recipe, "-o", tmp_path / "q.onnx", "--json")
    assert result.exit_code == 0, result.output
    options = json.loads(result.output)["options"]
    assert (options["mode"], options["nm"]) == ("n:m", "1:4")
    bad = run("compress", digits, "--mode", "sparse", "-o", tmp_path / "x.onnx")
    assert bad.exit_code == ExitCode.USAGE and "N:M" in bad.output


def test_analyze_reports_macs_at_the_input_shape(tmp_model):
    model = tmp_model(detector_like(32), "det.onnx")
    small = json.loads(run("analyze", model, "--json", "--input-shape",
                           "images:1x3x160x160").output)
    large = json.loads(run("analyze", model, "--json", "--input-shape",
                           "images:1x3x320x320").output)
    assert large["macs"] == 4 * small["macs"]
    assert large["input_shapes"]["images"]["source"] == "given"


def test_model_that_runs_at_no_default_size_exits_4_naming_input(tmp_model, tmp_path):
    from tests.graph.dynamic_models import fixed_size_only

    model = tmp_model(fixed_size_only(50))
    result = run("compress", model, "-t", "0.3", "-o", tmp_path / "p.onnx")
    assert result.exit_code == ExitCode.UNSUPPORTED_MODEL, result.output
    assert "input 'x'" in result.output and "--input-shape x:" in result.output
    assert "does not run" not in result.output


def test_sensitivity_records_the_input_shapes(tmp_model):
    model = tmp_model(paddle_like())
    result = run("sensitivity", model, "--input-shape", "x:1x3x32x32", "--ratios", "0.5",
                 "--max-samples", "4", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["input_shapes"]["x"]["shape"] == [None, 3, 32, 32]


def test_bench_times_a_dynamic_detector_at_a_size_it_accepts(tmp_model):
    model = tmp_model(detector_like(64), "det.onnx")
    result = run("bench", model, "--runs", "2", "--warmup", "0", "--no-memory", "--json")
    assert result.exit_code == 0, result.output
    document = json.loads(result.output)
    assert document["settings"]["input_shapes"] == {"images": [1, 3, 256, 256]}
    static = tmp_model(detector_like(64, dims=[1, 3, 256, 256]), "static.onnx")
    expected = json.loads(run("analyze", static, "--json").output)["macs"]
    assert document["models"][0]["macs"] == expected
