from __future__ import annotations

import builtins
import os
import pathlib

import pytest
from hypothesis import HealthCheck, settings

# Property tests: "ci" (default) keeps the suite fast; "thorough" is for local runs:
#   HYPOTHESIS_PROFILE=thorough python -m pytest tests/property
settings.register_profile("ci", max_examples=60, deadline=None, derandomize=True,
                          suppress_health_check=[HealthCheck.too_slow,
                                                 HealthCheck.data_too_large])
settings.register_profile("thorough", max_examples=1000, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow,
                                                 HealthCheck.data_too_large])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

ROOT = pathlib.Path(__file__).resolve().parent.parent
MODELS = ROOT / "fixtures" / "models"


def zoo_files() -> list[pathlib.Path]:
    return sorted(MODELS.glob("*.onnx"))


@pytest.fixture
def tmp_model(tmp_path):
    """Write a ModelProto into tmp_path and return the path."""
    import onnx

    def write(model, name: str = "model.onnx") -> pathlib.Path:
        path = tmp_path / name
        onnx.save(model, path)
        return path

    return write


@pytest.fixture
def no_ray(monkeypatch):
    """Ray is not installed (``import ray`` fails), whatever this environment has."""
    real_import = builtins.__import__

    def refuse(name, *args, **kwargs):
        if name == "ray" or name.startswith("ray."):
            raise ImportError("No module named 'ray'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", refuse)

