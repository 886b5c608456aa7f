"""shape_tensors: locating, reading and patching entries of 1-D shape tensors."""

from __future__ import annotations

import numpy as np
import onnx_ir as ir
from onnx import TensorProto

from onnxprune.analysis import analyze
from onnxprune.analysis.rules.shape_tensors import (
    ShapeEntry,
    constant_entry,
    locate_shape_entry,
    patch_shape_entry,
    shape_entries,
)
from onnxprune.rewrite.context import RewriteContext
from tests.builders import GraphBuilder
from tests.oracle import load


def _node(model: ir.Model, name: str) -> ir.Node:
    return next(n for n in model.graph if n.name == name)


def _two_reshapes(shared: bool) -> ir.Model:
    """x [N, 8, 4] -> Reshape to Concat(Shape(x)[0], [-1, 32]) (``r1``); a second
    Reshape ``r2`` reads the same Concat when ``shared``, else a constant target."""
    b = GraphBuilder(opset=17)
    x = b.input(["N", 8, 4])
    batch = b.op("Gather", [b.op("Shape", [x]), b.ints([0])], axis=0, name="batch")
    target = b.op("Concat", [batch, b.ints([-1, 32])], axis=0, name="target")
    b.output(b.op("Reshape", [x, target], name="r1"))
    b.output(b.op("Reshape", [x, target if shared else b.ints([1, 1, 32])], name="r2"))
    return load(b.model())


def test_constant_shape_entries_locate_in_the_tensor_itself():
    model = _two_reshapes(shared=False)
    target = _node(model, "r2").inputs[1]
    assert locate_shape_entry(target, 2) == ShapeEntry(None, -1, 2)
    assert shape_entries(target, 3) == [1, 1, 32]


def test_concat_pieces_of_unknown_length_cannot_be_followed():
    target = _node(_two_reshapes(shared=True), "r1").inputs[1]  # no shape inference yet
    assert locate_shape_entry(target, 2) == "shape pieces of unknown length"


def test_concat_pieces_are_followed_and_runtime_pieces_are_dynamic():
    model = _two_reshapes(shared=True)
    analyze(model)  # infers the pieces' lengths, as rules see them
    target = _node(model, "r1").inputs[1]
    concat = _node(model, "target")
    assert locate_shape_entry(target, 0) == "dynamic"
    assert locate_shape_entry(target, 2) == ShapeEntry(concat, 1, 1)
    assert locate_shape_entry(target, 3) == "shape entry out of range"
    assert shape_entries(target, 3) == [None, -1, 32]
    assert constant_entry(target, 2) == 32


def test_a_graph_input_shape_cannot_be_followed():
    b = GraphBuilder(opset=17)
    x = b.input(["N", 8])
    shape = b.input([2], name="shape", dtype=TensorProto.INT64)
    b.output(b.op("Reshape", [x, shape], name="r"))
    target = _node(load(b.model()), "r").inputs[1]
    assert locate_shape_entry(target, 1) == "shape input is a graph input"
    assert constant_entry(target, 1) is None


def _rewrite_context(model: ir.Model) -> RewriteContext:
    analysis = analyze(model)
    return RewriteContext(analysis, np.zeros(analysis.num_units, dtype=bool))


def test_patching_a_shared_concat_copies_it_for_the_reader():
    model = _two_reshapes(shared=True)
    ctx = _rewrite_context(model)
    r1, r2 = _node(model, "r1"), _node(model, "r2")
    assert patch_shape_entry(ctx, r1, 1, 2, 24)
    assert r1.inputs[1] is not r2.inputs[1]
    assert shape_entries(r1.inputs[1], 3) == [None, -1, 24]
    assert shape_entries(r2.inputs[1], 3) == [None, -1, 32]
    copy = r1.inputs[1].producer()
    assert copy.op_type == "Concat" and copy is not _node(model, "target")


def test_patching_leaves_minus_one_mismatches_and_equal_values_alone():
    model = _two_reshapes(shared=False)
    ctx = _rewrite_context(model)
    r1 = _node(model, "r1")
    assert not patch_shape_entry(ctx, r1, 1, 1, 5)               # the -1 adapts by itself
    assert not patch_shape_entry(ctx, r1, 1, 2, 16, only_if=8)   # 32 is not the width 8
    assert not patch_shape_entry(ctx, r1, 1, 2, 32)              # nothing to change
    assert not patch_shape_entry(ctx, r1, 1, 0, 2)               # run-time entry
    assert shape_entries(r1.inputs[1], 3) == [None, -1, 32]
    assert patch_shape_entry(ctx, r1, 1, 2, 16, only_if=32)
    assert _node(model, "target").outputs[0].uses()[0].node is r1  # not shared: patched in place
    assert shape_entries(r1.inputs[1], 3) == [None, -1, 16]
