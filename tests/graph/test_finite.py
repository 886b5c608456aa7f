"""NaN is never accepted; ±Inf only where the op defines it (graph/validate.py rule 1)."""

from __future__ import annotations

import numpy as np
import pytest
from click.testing import CliRunner
from onnx import numpy_helper

from onnxprune import compress
from onnxprune.cli import main
from onnxprune.errors import ExitCode, InvalidModelError
from onnxprune.graph import load_model
from onnxprune.graph.validate import check_finite
from tests.builders import GraphBuilder


def clip_cnn():
    """An audio-front-end style Clip whose bounds are ``-inf`` and ``+inf`` constants."""
    b = GraphBuilder(opset=13)
    x = b.input(["N", 3, 8, 8])
    low, high = b.init(np.float32(-np.inf)), b.init(np.float32(np.inf))
    h = b.op("Clip", [b.conv(x, 3, 16, name="c1"), low, high])
    h = b.op("Clip", [b.op("Relu", [h]), b.init(np.float32(0.0)), b.init(np.float32(6.0))])
    b.output(b.conv(h, 16, 4, name="c2"))
    return b.model()


def masked_attention():
    """Scores plus a constant mask of ``-inf`` (causal), then Softmax."""
    b = GraphBuilder(opset=13)
    x = b.input(["N", 5, 8])
    q = b.op("MatMul", [x, b.weight(8, 8)])
    k = b.op("MatMul", [x, b.weight(8, 8)])
    scores = b.op("MatMul", [q, b.op("Transpose", [k], perm=[0, 2, 1])])
    mask = np.triu(np.full((5, 5), -np.inf, np.float32), k=1)
    p = b.op("Softmax", [b.op("Add", [scores, b.init(mask)])], axis=-1)
    h = b.op("MatMul", [p, b.op("MatMul", [x, b.weight(8, 16)])])
    b.output(b.op("MatMul", [b.op("Relu", [h]), b.weight(16, 8)]))
    return b.model()


@pytest.mark.parametrize("build", [clip_cnn, masked_attention], ids=["clip_bounds", "mask"])
def test_inf_where_the_op_defines_it_compresses(tmp_model, build):
    path = tmp_model(build())
    check_finite(load_model(path).model)
    result = compress(path, 0.3, write=False)
    assert result.params_after < result.params_before
    assert result.verification["max_rel_diff"] < 1e-4


@pytest.mark.parametrize("value", [np.inf, -np.inf, np.nan], ids=["inf", "-inf", "nan"])
def test_conv_weight_with_inf_or_nan_exits_3_naming_it(tmp_path, tmp_model, value):
    model = clip_cnn()
    weight = next(t for t in model.graph.initializer if len(t.dims) == 4)
    array = numpy_helper.to_array(weight).copy()
    array.flat[5] = value
    weight.CopyFrom(numpy_helper.from_array(array, weight.name))
    path = tmp_model(model)
    result = CliRunner().invoke(main, ["compress", str(path), "--target", "0.3"])
    assert result.exit_code == ExitCode.INVALID_MODEL, result.output
    assert f"'{weight.name}'" in result.stderr and "NaN or Inf" in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx"]


def test_nan_in_a_clip_bound_is_refused(tmp_model):
    model = clip_cnn()
    bound = next(t for t in model.graph.initializer if not t.dims and
                 np.isneginf(numpy_helper.to_array(t)))
    bound.CopyFrom(numpy_helper.from_array(np.float32(np.nan), bound.name))
    with pytest.raises(InvalidModelError, match=bound.name):
        check_finite(load_model(tmp_model(model)).model)
