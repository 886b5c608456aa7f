"""The masked twin of ``rewrite/oracle.py`` on tracked tensors that are not float.

A comparison of channels (``Greater``) is a tracked bool tensor and a ``Cast`` to int
a tracked integer one. The twin must mask each with its own type (bool with ``And``),
also when the original proto declares no intermediate types: before, ``compress``
failed with "masked original does not load in ONNX Runtime" on ``Where(x > 0, ...)``.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto

from onnxprune.compress import compress
from onnxprune.rewrite import masked_model
from tests.builders import GraphBuilder
from tests.oracle import session


def _leaky_where() -> onnx.ModelProto:
    b = GraphBuilder()
    h = b.conv(b.input(["N", 3, 8, 8]), 3, 8, name="c1")
    positive = b.op("Greater", [h, b.init(np.float32(0.0))], name="gt")
    whole = b.op("Cast", [b.op("Cast", [h], to=TensorProto.INT32)], to=TensorProto.FLOAT,
                 name="whole")
    h = b.op("Where", [positive, h, b.op("Mul", [whole, b.init(np.float32(0.1))])])
    b.output(b.conv(h, 8, 4, name="head"))
    return b.model()


def test_bool_and_integer_tensors_are_masked_in_their_own_type():
    model = _leaky_where()
    assert not model.graph.value_info  # nothing declares the intermediate types
    keep = np.array([True, False] * 4)
    cast = next(n for n in model.graph.node if n.name == "whole").input[0]
    masks = {"gt_out": (1, 4, keep), cast: (1, 4, keep)}
    twin = masked_model(model, masks)
    ops = {n.output[0]: n for n in twin.graph.node}
    assert ops["gt_out__masked"].op_type == "And"
    assert ops[f"{cast}__masked"].op_type == "Mul"
    dtypes = {t.name: t.data_type for t in twin.graph.initializer}
    assert dtypes["gt_out__mask"] == TensorProto.BOOL
    assert dtypes[f"{cast}__mask"] == TensorProto.INT32
    feeds = {"x": np.random.default_rng(0).standard_normal((2, 3, 8, 8)).astype(np.float32)}
    assert session(twin).run(None, feeds)[0].shape == (2, 4, 8, 8)


def test_compress_verifies_a_model_with_tracked_comparisons(tmp_path):
    source = tmp_path / "where.onnx"
    onnx.save(_leaky_where(), source)
    result = compress(source, 0.4, output=tmp_path / "out.onnx", report=False, round_to=4)
    assert result.verification["outputs_match"]
    assert result.verification["max_rel_diff"] < 1e-4
