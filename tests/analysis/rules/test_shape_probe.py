"""Unit tests of ``analysis/rules/shape_probe.py``: slice bounds computed from the
sliced tensor's own shape, re-evaluated for other channel counts.

Rule 1: only constants and ``Shape`` of the sliced tensor may be read (another
tensor, a graph input: not probeable); rule 2: the reference evaluator runs at most
``MAX_NODES`` nodes. The analysis-level use (TorchScript's ``chunk``) is in
``tests/analysis/test_rules.py::test_runtime_chunk_slices_keep_equal_halves``.
"""

from __future__ import annotations

import onnx_ir as ir
import pytest
from onnx import TensorProto

from onnxprune.analysis.rules.shape_probe import MAX_NODES, probe_bounds
from tests.builders import GraphBuilder
from tests.oracle import load

C = 16


def _values(b: GraphBuilder, *names: str) -> list[ir.Value]:
    model = load(b.model())
    found = {v.name: v for n in model.graph for v in (*n.inputs, *n.outputs) if v is not None}
    return [found[n] for n in names]


def _chunk(b: GraphBuilder, index: int, parts: int = 2, shape_attrs: dict | None = None):
    """TorchScript's chunk: bounds ``index * ceil(C / parts)`` .. ``(index + 1) * ...``."""
    x = b.input(["N", C, 4], name="x")
    h = b.op("Relu", [x], name="h")
    if shape_attrs:
        channels = b.op("Gather", [b.op("Shape", [h], **shape_attrs), b.ints([0])], axis=0)
    else:
        channels = b.op("Gather", [b.op("Shape", [h]), b.ints([1])], axis=0)
    size = b.op("Div", [b.op("Add", [channels, b.ints([parts - 1])]), b.ints([parts])])
    start = b.op("Mul", [size, b.ints([index])], name="start")
    stop = b.op("Mul", [size, b.ints([index + 1])], name="stop")
    b.output(b.op("Slice", [h, start, stop, b.ints([1])], name="part"))


@pytest.mark.parametrize(("index", "parts"), [(0, 2), (1, 2), (2, 4)])
def test_chunk_bounds_follow_the_channel_count(index, parts):
    b = GraphBuilder(opset=17)
    _chunk(b, index, parts)
    start, stop, h = _values(b, "start_out", "stop_out", "h_out")
    counts = [C, 2 * C, 8]
    probes = probe_bounds([start, stop], h, (None, C, 4), 1, counts, 17)
    assert probes is not None and len(probes) == 3
    for count, (lo, hi) in zip(counts, probes):
        width = -(-count // parts)
        assert (int(lo[0]), int(hi[0])) == (index * width, (index + 1) * width)


def test_shape_with_start_and_end_attributes_is_sliced_like_the_runtime():
    b = GraphBuilder(opset=17)
    _chunk(b, 1, shape_attrs={"start": 1, "end": 2})
    start, stop, h = _values(b, "start_out", "stop_out", "h_out")
    probes = probe_bounds([start, stop], h, (None, C, 4), 1, [C, 6], 17)
    assert [[int(v[0]) for v in p] for p in probes] == [[C // 2, C], [3, 6]]


def test_constant_values_are_returned_as_they_are():
    b = GraphBuilder(opset=17)
    _chunk(b, 0)
    start, h, part = _values(b, "start_out", "h_out", "part_out")
    one = part.producer().inputs[3]  # the constant step
    probes = probe_bounds([start, one], h, (None, C, 4), 1, [C], 17)
    assert int(probes[0][1][0]) == 1


def test_only_constants_give_nothing_to_probe():
    b = GraphBuilder(opset=17)
    x = b.input(["N", C], name="x")
    b.output(b.op("Slice", [b.op("Relu", [x], name="h"), b.ints([0]), b.ints([4]),
                            b.ints([1])], name="part"))
    part = _values(b, "part_out")[0].producer()
    assert probe_bounds([part.inputs[1], part.inputs[2]], part.inputs[0], (None, C), 1,
                        [C], 17) is None


def test_a_bound_reading_the_shape_of_another_tensor_is_not_probeable():
    b = GraphBuilder(opset=17)
    x = b.input(["N", C, 4], name="x")
    h = b.op("Relu", [x], name="h")
    other = b.op("Gather", [b.op("Shape", [x]), b.ints([1])], axis=0, name="other")
    b.output(b.op("Slice", [h, b.ints([0]), other, b.ints([1])], name="part"))
    other_value, h_value = _values(b, "other_out", "h_out")
    assert probe_bounds([other_value], h_value, (None, C, 4), 1, [C], 17) is None


def test_a_bound_reading_a_graph_input_is_not_probeable():
    b = GraphBuilder(opset=17)
    x = b.input(["N", C, 4], name="x")
    h = b.op("Relu", [x], name="h")
    k = b.input([1], name="k", dtype=TensorProto.INT64)
    stop = b.op("Add", [b.op("Gather", [b.op("Shape", [h]), b.ints([1])], axis=0), k],
                name="stop")
    b.output(b.op("Slice", [h, b.ints([0]), stop, b.ints([1])], name="part"))
    stop_value, h_value = _values(b, "stop_out", "h_out")
    assert probe_bounds([stop_value], h_value, (None, C, 4), 1, [C], 17) is None


def test_a_computation_longer_than_max_nodes_is_not_probeable():
    b = GraphBuilder(opset=17)
    x = b.input(["N", C], name="x")
    h = b.op("Relu", [x], name="h")
    v = b.op("Gather", [b.op("Shape", [h]), b.ints([1])], axis=0)
    for _ in range(MAX_NODES + 2):
        v = b.op("Identity", [v])
    b.output(b.op("Slice", [h, b.ints([0]), v, b.ints([1])], name="part"))
    model = load(b.model())
    part = next(n for n in model.graph if n.name == "part")
    assert probe_bounds([part.inputs[2]], part.inputs[0], (None, C), 1, [C], 17) is None


def test_an_op_the_reference_evaluator_cannot_run_is_not_probeable():
    b = GraphBuilder(opset=17)
    x = b.input(["N", C], name="x")
    h = b.op("Relu", [x], name="h")
    v = b.op("Gather", [b.op("Shape", [h]), b.ints([1])], axis=0)
    v = b.op("NoSuchOp", [v], domain="custom", name="weird")
    b.output(b.op("Slice", [h, b.ints([0]), v, b.ints([1])], name="part"))
    model = load(b.model())
    part = next(n for n in model.graph if n.name == "part")
    assert probe_bounds([part.inputs[2]], part.inputs[0], (None, C), 1, [C], 17) is None
