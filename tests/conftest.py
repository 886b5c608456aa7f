from __future__ import annotations

import pathlib

import pytest

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
