"""Every row of the README's bad-input table: exit code, message, input untouched, no output.

The table (README, "Exit codes") promises for each bad input a one-line error with a
documented exit code, the input file unchanged, and no output or report file left.
"""

from __future__ import annotations

import errno
import hashlib
import pathlib
import shutil

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from onnx import numpy_helper

from onnxprune.cli import main
from onnxprune.errors import ExitCode
from tests.builders import GraphBuilder
from tests.conftest import MODELS


def cnn(opset: int = 13) -> onnx.ModelProto:
    b = GraphBuilder(opset=opset)
    x = b.input(["N", 3, 8, 8])
    h = b.op("Relu", [b.conv(x, 3, 16, name="c1")])
    b.output(b.conv(h, 16, 4, name="c2"))
    return b.model()


def write(path: pathlib.Path, model: onnx.ModelProto) -> pathlib.Path:
    onnx.save(model, path)
    return path


def make_input(case: str, folder: pathlib.Path) -> tuple[pathlib.Path, list[str]]:
    """Create the bad input for ``case``; return its path and extra CLI arguments."""
    path = folder / "model.onnx"
    if case == "missing":
        return folder / "absent.onnx", []
    if case == "directory":
        (folder / "adir").mkdir()
        return folder / "adir", []
    if case == "not_protobuf":
        path.write_bytes(b"\xff\xfe not a protobuf at all \x00\x01")
        return path, []
    if case == "truncated":
        data = (MODELS / "resnet_basic.ts.onnx").read_bytes()
        path.write_bytes(data[: len(data) // 2])
        return path, []
    if case == "corrupted":
        data = bytearray((MODELS / "mlp.ts.onnx").read_bytes())
        data[:16] = b"\xff" * 16
        path.write_bytes(bytes(data))
        return path, []
    if case == "not_a_model":
        path.write_bytes(numpy_helper.from_array(np.ones((4, 4), np.float32), "t")
                         .SerializeToString())
        return path, []
    if case in ("external_missing", "external_short"):
        onnx.save(cnn(), path, save_as_external_data=True, location="w.data", size_threshold=0)
        data = folder / "w.data"
        if case == "external_missing":
            data.unlink()
        else:
            data.write_bytes(data.read_bytes()[:8])
        return path, []
    if case == "opset_low":  # below 11 and not convertible: BatchNormalization spatial=0
        b = GraphBuilder(opset=6)
        x = b.input(["N", 3, 8, 8])
        h = b.op("BatchNormalization", [b.conv(x, 3, 4), b.positive(4), b.weight(4),
                                        b.weight(4), b.positive(4)], spatial=0)
        b.output(h, shape=["N", 4, 8, 8])
        return write(path, b.model()), []
    if case == "opset_high":
        return write(path, cnn(opset=23)), []
    if case == "no_group":
        b = GraphBuilder()
        b.output(b.conv(b.input(["N", 3, 8, 8]), 3, 4))
        return write(path, b.model()), []
    if case == "nonfinite":
        model = cnn()
        weight = numpy_helper.to_array(model.graph.initializer[0]).copy()
        weight.flat[3] = np.nan
        model.graph.initializer[0].CopyFrom(numpy_helper.from_array(
            weight, model.graph.initializer[0].name))
        return write(path, model), []
    path = write(path, cnn())
    if case == "data_mismatch":
        np.savez(folder / "calib.npz", image=np.zeros((4, 3, 8, 8), np.float32))
        return path, ["--data", str(folder / "calib.npz")]
    extra = {
        "target_range": ["--target", "1.2"],
        "unreachable": ["--target", "0.99"],
        "same_output": ["-o", str(path)],
        "missing_folder": ["-o", str(folder / "no" / "out.onnx")],
        "readonly_folder": ["-o", "/proc/out.onnx"],
        "output_is_dir": ["-o", str(folder)],
    }
    return path, extra.get(case, [])


CASES = [
    ("missing", ExitCode.INVALID_MODEL, "no such file"),
    ("directory", ExitCode.INVALID_MODEL, "is a directory"),
    ("not_protobuf", ExitCode.INVALID_MODEL, "not a readable ONNX model"),
    ("truncated", ExitCode.INVALID_MODEL, "ONNX"),
    ("corrupted", ExitCode.INVALID_MODEL, "ONNX"),
    ("not_a_model", ExitCode.INVALID_MODEL, "not a model"),
    ("external_missing", ExitCode.INVALID_MODEL, "is missing"),
    ("external_short", ExitCode.INVALID_MODEL, "too short"),
    ("opset_low", ExitCode.UNSUPPORTED_MODEL, "cannot convert it to opset 11"),
    ("opset_high", ExitCode.UNSUPPORTED_MODEL, "newer than the installed ONNX Runtime"),
    ("no_group", ExitCode.UNSUPPORTED_MODEL, "no prunable channel group"),
    ("target_range", ExitCode.USAGE, "'target'"),
    ("unreachable", ExitCode.UNREACHABLE_TARGET, "at most"),
    ("nonfinite", ExitCode.INVALID_MODEL, "NaN or Inf"),
    ("data_mismatch", ExitCode.DATA, "'x'"),
    ("same_output", ExitCode.OUTPUT, "equals the input"),
    ("missing_folder", ExitCode.OUTPUT, "does not exist"),
    ("readonly_folder", ExitCode.OUTPUT, "could not write"),
    ("output_is_dir", ExitCode.OUTPUT, "is a directory"),
]


def snapshot(folder: pathlib.Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("case,code,message", CASES, ids=[c[0] for c in CASES])
def test_bad_input_row(tmp_path, case, code, message):
    path, extra = make_input(case, tmp_path)
    args = ["compress", str(path), "--target", "0.5", "--round-to", "1", *extra]
    before = snapshot(tmp_path)
    result = CliRunner().invoke(main, args)
    assert result.exit_code == code, result.output
    assert message in result.stderr
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1
    assert snapshot(tmp_path) == before  # input untouched, no output, no report, no temp


def test_disk_full_during_write(tmp_path, monkeypatch):
    import onnx_ir as ir

    path = write(tmp_path / "model.onnx", cnn())
    before = snapshot(tmp_path)

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(ir, "save", full)
    result = CliRunner().invoke(main, ["compress", str(path), "-t", "0.5", "--round-to", "1"])
    assert result.exit_code == ExitCode.OUTPUT
    assert "disk full" in result.stderr
    assert snapshot(tmp_path) == before


# phase -> the pipeline module that calls it
PHASES = {"load_model": "onnxprune.pipeline.inputs", "analyze": "onnxprune.pipeline.prune",
          "open_calibration": "onnxprune.pipeline.prune", "apply_plan": "onnxprune.pipeline.prune",
          "verify": "onnxprune.pipeline.prune", "write_report": "onnxprune.pipeline.reports"}


@pytest.mark.parametrize("phase", list(PHASES))
def test_ctrl_c_at_any_phase_leaves_nothing(tmp_path, monkeypatch, phase):
    import importlib

    path = write(tmp_path / "model.onnx", cnn())
    before = snapshot(tmp_path)

    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(importlib.import_module(PHASES[phase]), phase, interrupt)
    result = CliRunner().invoke(main, ["compress", str(path), "-t", "0.5", "--round-to", "1"])
    assert result.exit_code == ExitCode.INTERRUPTED
    assert "interrupted" in result.stderr
    after = snapshot(tmp_path)
    if phase == "write_report":
        # the model was complete and committed before the report: keep it, report nothing
        after.pop("model.pruned.onnx", None)
    assert after == before


def test_custom_domain_op_is_a_barrier_not_a_crash(tmp_path):
    b = GraphBuilder()
    x = b.input(["N", 3, 8, 8])
    h = b.op("Relu", [b.conv(x, 3, 16, name="c1")])
    h = b.conv(h, 16, 8, name="c2")
    h = b.op("Mystery", [h], domain="vendor.ops")
    b.output(h, shape=["N", 8, 8, 8])
    path = write(tmp_path / "model.onnx", b.model())
    analysis = CliRunner().invoke(main, ["analyze", str(path), "--json"])
    assert analysis.exit_code == 0 and "no rule for op Mystery" in analysis.stdout
    assert not (tmp_path / "model.pruned.onnx").exists()


def test_ir_version_above_runtime_is_lowered_and_said(tmp_path):
    model = cnn()
    model.ir_version = 12
    path = write(tmp_path / "model.onnx", model)
    result = CliRunner().invoke(main, ["compress", str(path), "-t", "0.3", "--json"])
    assert result.exit_code == 0, result.output
    assert any("IR version 12 is lowered" in n for n in __import__("json").loads(
        result.stdout)["notes"])
    assert onnx.load(tmp_path / "model.pruned.onnx").ir_version == 12
    shutil.rmtree(tmp_path / "no", ignore_errors=True)
