"""Input shapes for benchmarks: specs, batch, symbolic dimensions."""

from __future__ import annotations

import types

import pytest

from onnxprune.benchmark.inputs import parse_shape_specs, resolve_shapes
from onnxprune.benchmark.memory import peak_memory
from onnxprune.errors import UsageError
from tests.conftest import MODELS


def _arg(name, shape):
    return types.SimpleNamespace(name=name, shape=shape)


def test_shape_specs_parse_names_with_colons():
    assert parse_shape_specs(["x:1x3x224x224", "a:b:2X5"]) == {"x": (1, 3, 224, 224),
                                                              "a:b": (2, 5)}
    for bad in ("x", "x:", "x:1x0", ":3", "x:1xN"):
        with pytest.raises(UsageError, match="bad input shape"):
            parse_shape_specs([bad])


def test_batch_replaces_only_a_symbolic_first_dimension():
    inputs = [_arg("x", ["N", 3, 8, 8]), _arg("m", [2, 5])]
    assert resolve_shapes(inputs, {}, None) == {"x": (1, 3, 8, 8), "m": (2, 5)}
    assert resolve_shapes(inputs, {}, 8) == {"x": (8, 3, 8, 8), "m": (2, 5)}
    assert resolve_shapes(inputs, {"x": (2, 3, 16, 16)}, None)["x"] == (2, 3, 16, 16)
    assert resolve_shapes(inputs, {"x": (2, 3, 16, 16)}, 4)["x"] == (4, 3, 16, 16)


def test_symbolic_spatial_dimension_needs_a_spec():
    with pytest.raises(UsageError, match="--input-shape x:NxN"):
        resolve_shapes([_arg("x", ["N", "h"])], {}, None)
    with pytest.raises(UsageError, match="does not have as inputs"):
        resolve_shapes([_arg("x", ["N", 3])], {"y": (1, 3)}, None)
    with pytest.raises(UsageError, match="rank 3"):
        resolve_shapes([_arg("x", ["N", 3])], {"x": (1, 3, 3)}, None)


def test_peak_memory_probe_measures_a_fresh_process():
    result = peak_memory(MODELS / "resnet_basic.dynamo.onnx", "CPUExecutionProvider", 1,
                         {"input": [1, 3, 32, 32]})
    assert result["method"].startswith("peak RSS (VmHWM) of a fresh process")
    assert 0.1 < result["peak_mb"] < 500
