"""If/Loop bodies that read main-graph initializers and tensors (outer scope): every
derived graph (calibration gates, legalized training copy, masked twin) stays valid.

Before: the calibrated path (``compress --steps 1 --data``) dropped the tensor and the
initializer read only inside the branch ("must be topologically sorted", exit 1).
"""

from __future__ import annotations

import numpy as np
import onnx
from click.testing import CliRunner
from onnx import TensorProto, helper

from onnxprune.calibration.graph_edit import multiply_tensors
from onnxprune.cli import main
from onnxprune.graph.protos import ancestors, graph_reads, node_reads
from tests.builders import GraphBuilder
from tests.oracle import prune_and_check, session


def if_model() -> onnx.ModelProto:
    """conv1 -> relu -> conv2 -> relu -> If(mean(x) > 0: y + outer, else: y * outer);
    ``outer`` is a main-graph initializer and ``y`` a main-graph tensor, both read only
    inside the branches."""
    b = GraphBuilder(opset=17)
    x = b.input(["N", 3, 8, 8])
    h = b.op("Relu", [b.conv(x, 3, 16, name="conv1")])
    y = b.op("Relu", [b.conv(h, 16, 4, name="conv2")], name="last_relu")
    cond = b.op("Greater", [b.op("ReduceMean", [x], axes=[0, 1, 2, 3], keepdims=0),
                            b.init(np.float32(0.0))])
    outer = b.weight(1, 4, 1, 1)
    out = helper.make_tensor_value_info

    def branch(op: str, name: str) -> onnx.GraphProto:
        return helper.make_graph([helper.make_node(op, [y, outer], [f"{name}_out"])], name,
                                 [], [out(f"{name}_out", TensorProto.FLOAT, None)])

    b.output(b.op("If", [cond], then_branch=branch("Add", "then"),
                  else_branch=branch("Mul", "else"), name="branch"))
    return b.model()


def _if_node(model: onnx.ModelProto) -> onnx.NodeProto:
    return next(n for n in model.graph.node if n.op_type == "If")


def test_outer_scope_reads_count_as_reads():
    model = if_model()
    node = _if_node(model)
    outer = next(t.name for t in model.graph.initializer if tuple(t.dims) == (1, 4, 1, 1))
    assert {"last_relu_out", outer} <= set(node_reads(node))
    assert outer in graph_reads(model.graph)
    assert {"last_relu_out", outer, "conv2_out"} <= ancestors(model.graph, ["branch_out"])


def test_gates_reroute_readers_inside_branches():
    model = if_model()
    model.graph.initializer.append(onnx.numpy_helper.from_array(np.float32(2.0), "g"))
    multiply_tensors(model.graph, {"last_relu_out": "g"}, "gated")
    branch_inputs = {i for a in _if_node(model).attribute for n in a.g.node for i in n.input}
    assert "last_relu_out__gated" in branch_inputs and "last_relu_out" not in branch_inputs
    onnx.checker.check_model(model)
    feeds = {"x": np.abs(np.random.default_rng(0).standard_normal((2, 3, 8, 8)))
             .astype(np.float32)}
    got = session(model).run(None, feeds)[0]
    want = session(if_model()).run(None, feeds)[0]
    outer = onnx.numpy_helper.to_array(next(t for t in model.graph.initializer
                                            if tuple(t.dims) == (1, 4, 1, 1)))
    np.testing.assert_allclose(got - outer, 2.0 * (want - outer), rtol=1e-5, atol=1e-5)


def test_legalized_copy_keeps_outer_scope_initializers():
    from onnxprune.training.legalize import legalize

    feeds = {"x": np.random.default_rng(0).standard_normal((2, 3, 8, 8)).astype(np.float32)}
    legal = legalize(if_model(), 2, feeds, warn=False).model
    onnx.checker.check_model(legal)
    np.testing.assert_allclose(session(legal).run(None, feeds)[0],
                               session(if_model()).run(None, feeds)[0], rtol=1e-5, atol=1e-6)


def test_oracle_holds_with_a_branch_reading_outer_scope():
    checked = prune_and_check(if_model(), 0.2)
    (group,) = checked.analysis.prunable_groups
    assert checked.plan.kept[group.index] < 16
    blocked = [g for g in checked.analysis.groups if not g.prunable]
    assert any("read inside a subgraph" in r for g in blocked for r in g.reasons)


def test_calibrated_compress_with_an_if_branch(tmp_path, tmp_model):
    path = tmp_model(if_model())
    data = tmp_path / "x.npz"
    np.savez(data, x=np.random.default_rng(0).standard_normal((16, 3, 8, 8)).astype(np.float32))
    out = tmp_path / "p.onnx"
    result = CliRunner().invoke(main, ["compress", str(path), "--target", "0.2", "--steps", "1",
                                       "--data", str(data), "-o", str(out), "--json"])
    assert result.exit_code == 0, result.output
    assert out.is_file()
    assert "taylor unavailable" in result.output  # ORT training aborts on If: activations
