"""The latency benchmark scripts refuse a provider the build lacks with exit 7 (no timing)."""

from __future__ import annotations

import importlib.util
import pathlib

import pytest

from onnxprune.errors import ExitCode
from tests.fake_ort import FakeOrt

ROOT = pathlib.Path(__file__).resolve().parents[2]


def _script(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("name", ["bench_round_auto", "bench_latency"])
def test_absent_cuda_exits_7_with_the_build_to_install(name, monkeypatch, capsys):
    script = _script(name)
    monkeypatch.setattr(script, "import_ort", lambda: FakeOrt(["CPUExecutionProvider"]))
    monkeypatch.setattr("sys.argv", [name, "--provider", "cuda", "--models", "digits"])
    with pytest.raises(SystemExit) as info:
        script.main()
    assert info.value.code == ExitCode.RUNTIME_MISSING
    err = capsys.readouterr().err
    assert "cuda" in err and "onnxruntime-gpu" in err
