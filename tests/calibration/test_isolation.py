"""A native crash in a calibration step becomes a clear error, never a dead process."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from onnxprune.calibration import activations
from onnxprune.calibration.isolation import ENV, guarded, isolation_enabled
from onnxprune.cli import main
from onnxprune.errors import ExitCode, UnsupportedModelError
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
