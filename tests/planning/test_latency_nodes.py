"""The latency model's node part: non-modelled nodes scale with their carrier's channels."""

from __future__ import annotations

import json
import types

import numpy as np
import pytest

from onnxprune.analysis import analyze
from onnxprune.benchmark import latency_profile as lp
from onnxprune.benchmark import latency_table as lt
from onnxprune.benchmark.latency_table import LatencySettings, cache_key
from onnxprune.graph.io import model_from_proto
from onnxprune.planning import PlanOptions
from onnxprune.planning.latency import LatencyCost, make_latency_plan
from onnxprune.planning.latency_model import LatencyTable, grid_counts, layer_specs
from onnxprune.planning.latency_nodes import carrier, node_specs
from onnxprune.planning.latency_steps import step_table
from onnxprune.planning.planner import group_options
from tests.builders import GraphBuilder
from tests.fake_ort import FakeOrt
from tests.oracle import prune_and_check


def _se_model():
    """x -> c1 (3->16) -> Relu -> SE(GAP, s1 16->8, Relu, s2 8->16, Sigmoid, Mul)
    -> c2 (16->16) -> Relu -> c3 (16->8) -> GAP (head)."""
    b = GraphBuilder()
    x = b.input([1, 3, 8, 8])
    h = b.op("Relu", [b.conv(x, 3, 16, name="c1")])
    s = b.op("GlobalAveragePool", [h])
    s = b.op("Relu", [b.conv(s, 16, 8, name="s1")])
    s = b.op("Sigmoid", [b.conv(s, 8, 16, name="s2")])
    h = b.op("Mul", [h, s])
    h = b.op("Relu", [b.conv(h, 16, 16, name="c2")])
    b.output(b.op("GlobalAveragePool", [b.conv(h, 16, 8, name="c3")]))
    return b.model()


def _analysis():
    return analyze(model_from_proto(_se_model()))


def _group(analysis, source: str) -> int:
    return next(g.index for g in analysis.prunable_groups
                if any(s.node == source for s in g.sources))


def _node_of(analysis, op_type: str, index: int = 0):
    return [n for n in analysis.model.graph if n.op_type == op_type][index]


def _table(analysis, node_ms: float, attributed: bool = True) -> LatencyTable:
    """Layers at 0.001 ms per MAC-channel pair; the SE nodes ``node_ms`` each."""
    specs = layer_specs(analysis, {})
    layers = {}
    for spec in specs:
        c_in, c_out = grid_counts(spec)
        layers[spec.name] = {"c_in": c_in, "c_out": c_out,
                             "ms": [[0.001 * a * b for b in c_out] for a in c_in]}
    carriers = node_specs(analysis)
    se = [_node_of(analysis, op).outputs[0].name for op in ("GlobalAveragePool", "Mul")]
    se.append(_node_of(analysis, "Sigmoid").outputs[0].name)
    nodes = {name: {"ms": node_ms,
                    "width": carriers[name].width if attributed else None} for name in se}
    table = LatencyTable(layers, 0.0, nodes=nodes)
    table.whole_ms = 1.0 + table.modelled_ms + table.nodes_ms
    table.context_fraction = table.modelled_ms / table.whole_ms
    return table


def test_se_nodes_follow_the_group_of_their_channels_and_the_head_stays_fixed():
    analysis = _analysis()
    carriers = node_specs(analysis)
    c1 = _group(analysis, "c1")
    prunable = {g.index for g in analysis.prunable_groups}
    for op in ("GlobalAveragePool", "Sigmoid", "Mul"):
        spec = carriers[_node_of(analysis, op).outputs[0].name]
        layout = analysis.ctx.layout(spec.value)
        groups = set(analysis.unit_group[analysis.element_unit[layout.ids]].tolist())
        assert spec.width == 16 and groups == {c1} and c1 in prunable, op
    head = _node_of(analysis, "GlobalAveragePool", 1)  # after c3, whose output is kept
    assert carriers[head.outputs[0].name] is None


def test_a_node_mixing_groups_no_tensor_describes_stays_fixed():
    """Rule 2.3 (and 2.2's superset) on a hand-made analysis."""
    a, b, ab, o = (types.SimpleNamespace(name=n) for n in ("a", "b", "ab", "o"))
    layouts = {id(a): types.SimpleNamespace(axis=1, ids=np.arange(4)),
               id(b): types.SimpleNamespace(axis=1, ids=np.arange(4, 8)),
               id(ab): types.SimpleNamespace(axis=1, ids=np.arange(8))}
    fake = types.SimpleNamespace(
        ctx=types.SimpleNamespace(layout=lambda v: layouts.get(id(v))),
        element_unit=np.arange(8), unit_group=np.array([0] * 4 + [1] * 4))
    mixed = types.SimpleNamespace(inputs=[a, b], outputs=[o])
    concat = types.SimpleNamespace(inputs=[a, b], outputs=[ab])
    assert carrier(fake, mixed, {0, 1}) is None  # groups {0} and {1}: rule 2.3
    spec = carrier(fake, concat, {0, 1})  # {0, 1} contains both: rule 2.2
    assert spec is not None and spec.value is ab and spec.width == 8 and spec.name == "ab"
    assert carrier(fake, mixed, {2}) is None  # no tracked tensor: rule 2.1


def test_predicted_latency_scales_attributed_nodes_and_keeps_the_others_fixed():
    analysis = _analysis()
    c1 = _group(analysis, "c1")
    for attributed in (True, False):
        table = _table(analysis, 2.0, attributed)
        opts = group_options(analysis, np.ones(analysis.num_units),
                             PlanOptions(0.5, "flops", round_to=8, min_keep=0.1))
        cost = LatencyCost(analysis, table, layer_specs(analysis, {}), opts)
        assert cost.predicted() == pytest.approx(table.whole_ms)
        g = next(i for i, o in enumerate(opts) if o.group.index == c1)
        half = next(c for c in opts[g].counts if c == 8)
        before = cost.predicted()
        after, _ = cost.trial(g, half)
        layers_saved = before - after - (3 * 2.0 * 0.5 if attributed else 0.0)
        # the layers touching c1's channels lose the same time either way
        assert layers_saved == pytest.approx(_layers_saved(analysis, table, c1, half))


def _layers_saved(analysis, table, group, removed) -> float:
    full = sum(table.scale * table.full_ms(name) for name in table.layers)
    kept = 16 - removed
    c1, s1, c2 = (table.layer_ms(n, a, b) for n, a, b in (("c1_out", 3, kept),
                                                          ("s1_out", kept, 8),
                                                          ("c2_out", kept, 16)))
    s2 = table.layer_ms("s2_out", 8, kept)
    rest = table.full_ms("c3_out")
    return full - table.scale * (c1 + s1 + c2 + s2 + rest)


def test_the_planner_prunes_the_se_group_when_its_nodes_cost_per_channel():
    analysis = _analysis()
    c1, c2 = _group(analysis, "c1"), _group(analysis, "c2")
    scores = np.ones(analysis.num_units)  # c1's channels matter alike, c2 has 4 weak ones
    scores[analysis.groups[c2].units[:4]] = 0.1
    options = PlanOptions(0.01, "latency", round_to=4, min_keep=0.25)
    kept = {}
    for attributed in (False, True):  # but c1's SE nodes cost 5 ms each at 16 channels
        table = _table(analysis, 5.0, attributed)
        plan = make_latency_plan(analysis, scores, options, table, layer_specs(analysis, {}))
        kept[attributed] = (plan.kept[c1], plan.kept[c2])
    assert kept[False][1] < 16  # nodes fixed: c2's weak channels must pay too
    assert kept[True][0] < 16 and kept[True][1] == 16  # nodes scale: c1 alone buys the time

    def planner(analysis, scores, plan_options):  # the rewrite of such a plan stays exact
        return make_latency_plan(analysis, scores, options, _table(analysis, 5.0, True),
                                 layer_specs(analysis, {}))

    checked = prune_and_check(_se_model(), 0.01, metric="latency", round_to=4,
                              planner=planner, batches=(1,))
    assert checked.plan.removed_units.any()


def test_node_fractions_attribute_kernels_by_node_index_and_nchwc_output():
    def kernel(ts, dur, name, op):
        return {"cat": "Node", "name": f"{name}_kernel_time", "ts": ts, "dur": dur,
                "args": {"op_name": op}}

    events = [{"cat": "Session", "name": "model_run", "ts": 0, "dur": 100},
              kernel(1, 50, "onnxprune_n0", "Conv"),  # modelled: not a node
              kernel(2, 10, "onnxprune_n1", "Mul"),
              kernel(3, 20, "gap_nchwc", "GlobalAveragePool"),
              kernel(4, 5, "ReorderOutput_token_3", "ReorderOutput"),  # created: none
              {"cat": "Session", "name": "model_run", "ts": 200, "dur": 100},
              kernel(202, 30, "onnxprune_n1", "Mul")]
    keys = ["conv_out", "mul_out", "gap"]
    profile_events = json.dumps(events)
    import pathlib
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        path = pathlib.Path(folder) / "p.json"
        path.write_text(profile_events)
        shares = lp.node_fractions(str(path), keys, lt._MODELLED_OPS)
    assert lp._node_key("onnxprune_n1_mul", keys, set(keys)) == "mul_out"
    assert shares == {"mul_out": pytest.approx(0.2), "gap": pytest.approx(0.1)}
    nodes = lp.node_entries(shares, {"mul_out": 16, "gap": None}, 0.5, 10.0)
    assert nodes == {"mul_out": {"ms": pytest.approx(2.0), "width": 16},
                     "gap": {"ms": pytest.approx(1.0), "width": None}}
    squeezed = lp.node_entries(shares, {"mul_out": 16, "gap": None}, 0.85, 10.0)
    assert sum(e["ms"] for e in squeezed.values()) == pytest.approx(1.5)  # 1 - 0.85


def test_table_format_3_measures_tables_of_the_previous_format_again(tmp_path, monkeypatch):
    key = cache_key(b"m", "cpu", 1, {"x": (1, 3, 8, 8)}, "1.0")
    assert key["format"] == lt.TABLE_FORMAT == 3
    proto = _se_model()
    analysis = analyze(model_from_proto(proto))
    settings = LatencySettings(runs=3, warmup=1, cache=str(tmp_path))
    monkeypatch.setattr(lt, "TABLE_FORMAT", 2)
    lt.latency_table(proto, analysis, settings, ort=FakeOrt(["CPUExecutionProvider"]))
    monkeypatch.setattr(lt, "TABLE_FORMAT", 3)
    ort = FakeOrt(["CPUExecutionProvider"])
    table, _, info = lt.latency_table(proto, analysis, settings, ort=ort, clock=ort.clock)
    assert not info["cache_hit"] and ort.sessions
    assert LatencyTable.from_dict(table.to_dict()).nodes == table.nodes


def test_step_table_nodes_follow_the_step_width_relative_to_the_original():
    analysis = _analysis()
    original = _table(analysis, 4.0, True)
    mul = _node_of(analysis, "Mul").outputs[0].name
    gap = _node_of(analysis, "GlobalAveragePool").outputs[0].name
    sig = _node_of(analysis, "Sigmoid").outputs[0].name
    carriers = node_specs(analysis)
    halved = {mul: carriers[mul].__class__(mul, carriers[mul].value, 1, 8), gap: None}
    step = step_table(original, layer_specs(analysis, {}), halved)
    assert step.nodes[mul] == {"ms": pytest.approx(2.0), "width": 8}  # 4 ms * 8 / 16
    assert step.nodes[gap] == original.nodes[gap]  # no carrier now: kept as measured
    assert sig not in step.nodes  # the step model lost it
    assert step.node_ms(mul, 4) == pytest.approx(original.node_ms(mul, 4))
    assert step.fixed_ms == pytest.approx(original.fixed_ms)
    assert step.whole_ms == pytest.approx(original.fixed_ms + original.scale *
                                          original.modelled_ms + 2.0 + 4.0)


def test_the_profiled_copy_names_nodes_by_index_and_splits_hardswish_like_the_runtime():
    import onnx
    from onnx.reference import ReferenceEvaluator

    b = GraphBuilder()
    x = b.input([1, 3, 4, 4])
    b.output(b.op("Relu", [b.op("HardSwish", [b.conv(x, 3, 8, name="c1")])]))
    proto = b.model()
    data, keys = lp.named_model(proto)
    named = onnx.load_from_string(data)
    assert keys == [n.output[0] for n in proto.graph.node]
    assert [(n.op_type, n.name) for n in named.graph.node] == [
        ("Conv", "onnxprune_n0"), ("HardSigmoid", "onnxprune_n1_hardsigmoid"),
        ("Mul", "onnxprune_n1_mul"),
        ("Relu", "onnxprune_n2")]
    feed = {proto.graph.input[0].name: np.random.default_rng(0).standard_normal(
        (1, 3, 4, 4)).astype(np.float32) * 4}
    want = ReferenceEvaluator(proto).run(None, feed)[0]
    got = ReferenceEvaluator(named).run(None, feed)[0]
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_a_real_runtime_profile_gives_the_se_nodes_times_with_their_width(tmp_path):
    proto = _se_model()
    analysis = analyze(model_from_proto(proto))
    settings = LatencySettings(runs=3, warmup=1, cache=str(tmp_path))
    table, _, _ = lt.latency_table(proto, analysis, settings, shapes={"x": (1, 3, 8, 8)})
    mul = _node_of(analysis, "Mul").outputs[0].name
    assert table.context_fraction is not None
    assert mul in table.nodes and table.nodes[mul]["width"] == 16
    assert all(e["ms"] > 0 for e in table.nodes.values())
    assert table.fixed_ms + table.scale * table.modelled_ms + table.nodes_ms == \
        pytest.approx(table.whole_ms, rel=1e-6)
