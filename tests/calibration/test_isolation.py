"""A native crash in a calibration step becomes a clear error, never a dead process."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from onnxprune.calibration import activations, isolation, sensitivity
from onnxprune.calibration.isolation import ENV, guarded, isolation_enabled, preflight
from onnxprune.calibration.tap import first_batch
from onnxprune.cli import main
from onnxprune.errors import ExitCode, UnsupportedModelError
from onnxprune.recovery import lsq
from tests.calibration.crashing import crash
from tests.conftest import MODELS


def test_crash_in_the_child_is_an_unsupported_model_error(monkeypatch):
    monkeypatch.setenv(ENV, "1")
    with pytest.raises(UnsupportedModelError, match=r"during activation statistics \(SIGSEGV\)"
                                                     r".*--input-shape"):
        guarded(crash, 1, what="activation statistics")
    assert guarded(divmod, 7, 2, what="arithmetic") == (3, 1)  # results come back


def test_auto_isolates_only_models_worth_a_process(monkeypatch):
    import onnx

    monkeypatch.delenv(ENV, raising=False)
    small = onnx.load(MODELS / "digits_cnn.ts.onnx")
    assert not isolation_enabled((small, 3))
    monkeypatch.setattr("onnxprune.calibration.isolation.AUTO_BYTES", 1)
    assert isolation_enabled((small, 3))
    monkeypatch.setenv(ENV, "0")
    assert not isolation_enabled((small,))


def test_cli_reports_a_crashing_calibration_step_with_exit_4(monkeypatch, tmp_path):
    monkeypatch.setenv(ENV, "1")
    monkeypatch.setattr(activations, "probe_position_means", crash)
    result = CliRunner().invoke(main, ["compress", str(MODELS / "digits_cnn.ts.onnx"), "-t",
                                       "0.3", "-o", str(tmp_path / "p.onnx"), "--steps", "1",
                                       "--criterion", "activation"])
    assert result.exit_code == ExitCode.UNSUPPORTED_MODEL, result.output
    line = result.output.strip().splitlines()[-1]
    assert "ONNX Runtime crashed during activation statistics (calibration) (SIGSEGV)" in line
    assert "input shapes" in line and "--input-shape" in line
    assert not (tmp_path / "p.onnx").exists()
    assert "Traceback" not in result.output


def _compress_lsq(tmp_path):
    return CliRunner().invoke(main, ["compress", str(MODELS / "digits_cnn.ts.onnx"), "-t", "0.3",
                                     "-o", str(tmp_path / "p.onnx"), "--steps", "1",
                                     "--max-samples", "8", "--recover", "lsq"])


def test_lsq_preflight_turns_a_native_crash_into_exit_4(monkeypatch, tmp_path):
    monkeypatch.setenv(ENV, "1")
    monkeypatch.setattr(lsq, "first_batch", crash)
    result = _compress_lsq(tmp_path)
    assert result.exit_code == ExitCode.UNSUPPORTED_MODEL, result.output
    line = result.output.strip().splitlines()[-1]
    assert "ONNX Runtime crashed during least-squares recovery" in line and "SIGSEGV" in line
    assert "--input-shape" in line and "Traceback" not in result.output
    assert not (tmp_path / "p.onnx").exists()


def test_sensitivity_preflight_turns_a_native_crash_into_exit_4(monkeypatch, tmp_path):
    monkeypatch.setenv(ENV, "1")
    monkeypatch.setattr(sensitivity, "first_batch", crash)
    result = CliRunner().invoke(main, ["sensitivity", str(MODELS / "digits_cnn.ts.onnx"),
                                       "--max-samples", "4", "--ratios", "0.5", "--json"])
    assert result.exit_code == ExitCode.UNSUPPORTED_MODEL, result.output
    line = result.output.strip().splitlines()[-1]
    assert "ONNX Runtime crashed during sensitivity" in line and "SIGSEGV" in line
    assert "Traceback" not in result.output


def test_preflights_do_not_run_with_isolation_off(monkeypatch, tmp_path):
    monkeypatch.setenv(ENV, "0")
    ran = []
    monkeypatch.setattr(isolation, "guarded", lambda *a, **k: ran.append(k["what"]))
    monkeypatch.setattr(lsq, "first_batch", crash)  # would kill pytest if it ran
    monkeypatch.setattr(sensitivity, "first_batch", crash)
    assert _compress_lsq(tmp_path).exit_code == 0
    result = CliRunner().invoke(main, ["sensitivity", str(MODELS / "digits_cnn.ts.onnx"),
                                       "--max-samples", "4", "--ratios", "0.5", "--json"])
    assert result.exit_code == 0, result.output
    assert ran == []


def test_preflight_runs_the_first_batch_of_every_session(monkeypatch):
    import onnx
    import onnx_ir as ir

    from onnxprune.data import synthetic_source

    model = onnx.load(MODELS / "digits_cnn.ts.onnx")
    data = synthetic_source(ir.serde.deserialize_model(model), 6)
    hidden = next(n.output[0] for n in model.graph.node if n.op_type == "Relu")
    assert first_batch(model, [hidden], data, 4, None, ((model, []),)) == 2
    monkeypatch.setenv(ENV, "0")
    assert preflight(first_batch, model, [hidden], data, 4, what="x") is False


def test_passing_preflights_let_the_steps_run_in_process(monkeypatch, tmp_path, caplog):
    monkeypatch.setenv(ENV, "1")
    caplog.set_level("INFO", logger="onnxprune.calibration.isolation")
    assert _compress_lsq(tmp_path).exit_code == 0
    assert (tmp_path / "p.onnx").is_file()
    assert any("least-squares recovery (calibration pre-flight): pre-flight" in r.getMessage()
               for r in caplog.records)
