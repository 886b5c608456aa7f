"""Unit tests of ``analysis/rules/common.py``: attribute and constant-input access, axis
arithmetic, the axes argument of both opset forms, and the NCHW axis check."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto

from onnxprune.analysis.context import AnalysisContext
from onnxprune.analysis.rules.common import (
    attr_int,
    attr_ints,
    axes_arg,
    channel_first_ok,
    const_ints,
    norm_axis,
)
from tests.builders import GraphBuilder
from tests.oracle import load
from tests.rule_checks import analyzed, group_of, reasons


def _context(opset: int, *, axes: str) -> tuple[AnalysisContext, object]:
    """One ReduceSum with ``axes`` given as "attr", "const", "dynamic" or "none"."""
    b = GraphBuilder(opset=opset)
    x = b.input(["N", 4, 5])
    inputs = [x]
    attrs = {}
    if axes == "attr":
        attrs["axes"] = [-1, 1]
    elif axes == "const":
        inputs.append(b.ints([-1, 1]))
    elif axes == "dynamic":
        inputs.append(b.input([2], name="axes", dtype=TensorProto.INT64))
    b.output(b.op("ReduceSum", inputs, name="red", keepdims=1, **attrs))
    model = load(b.model())
    node = next(iter(model.graph))
    return AnalysisContext(model), node


def test_attribute_access_with_defaults():
    _, node = _context(11, axes="attr")
    assert attr_int(node, "keepdims", 0) == 1
    assert attr_int(node, "noop_with_empty_axes", 7) == 7
    assert attr_ints(node, "axes") == (-1, 1)
    assert attr_ints(node, "missing") is None


def test_const_ints_reads_initializers_only():
    ctx, node = _context(13, axes="const")
    assert const_ints(ctx, node, 1) == (-1, 1)
    assert const_ints(ctx, node, 0) is None  # the data input is no constant
    assert const_ints(ctx, node, 5) is None  # absent
    ctx, node = _context(13, axes="dynamic")
    assert const_ints(ctx, node, 1) is None


@pytest.mark.parametrize(("axis", "rank", "expected"), [(-1, 4, 3), (-4, 4, 0), (2, 4, 2),
                                                        (0, 1, 0)])
def test_norm_axis(axis, rank, expected):
    assert norm_axis(axis, rank) == expected


@pytest.mark.parametrize(("opset", "axes", "expected"), [
    (11, "attr", (-1, 1)),      # before attr_since: the attribute
    (11, "none", None),
    (13, "const", (-1, 1)),     # from attr_since: the constant input
    (13, "none", None),
    (13, "dynamic", "dynamic"),
])
def test_axes_arg_reads_the_form_of_the_opset(opset, axes, expected):
    ctx, node = _context(opset, axes=axes)
    assert axes_arg(ctx, node, 1, attr_since=13) == expected


def test_channel_first_ok_blocks_a_layout_off_axis_1():
    ctx, node = _context(13, axes="none")
    from onnxprune.analysis.context import Layout

    assert channel_first_ok(ctx, node, None) is False
    assert ctx.blocks == []
    assert channel_first_ok(ctx, node, Layout(1, np.arange(4))) is True
    assert ctx.blocks == []
    assert channel_first_ok(ctx, node, Layout(2, np.array([0, 1, -1]))) is False
    ((ids, reason),) = ctx.blocks
    assert ids.tolist() == [0, 1]  # -1 positions are never blocked: they are fixed already
    assert reason == "ReduceSum 'red' reads channels on axis 1, but the pruned axis is 2"


@pytest.mark.parametrize(("op", "attrs", "what"), [
    ("Transpose", {"perm": [0, 2, 3, 1]}, "rank"),  # tracked_rank
    ("Flatten", {"axis": 1}, "shape"),  # tracked_shape
])
def test_tracked_input_of_unknown_rank_or_shape_blocks_its_channels(op, attrs, what):
    """tracked_rank/tracked_shape: channels reaching a rule that needs the input's rank
    or shape, when neither is known, are blocked with the reason (never dropped)."""
    b = GraphBuilder()
    h = b.op("Relu", [b.conv(b.input(["N", 3, 6, 6]), 3, 8, name="c1")], name="act")
    b.output(b.op(op, [h], name="n", **attrs))
    analysis = analyzed(b.model(), unknown_shapes=("act_out",))
    assert f"{op} 'n': input {what} unknown" in reasons(analysis, "c1")
    assert not group_of(analysis, "c1").prunable

