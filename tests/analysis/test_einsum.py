"""Einsum with a constant operand, pruned as a linear layer and checked by the oracle;
other forms are blocked with the equation in the reason."""

from __future__ import annotations

import pytest

from onnxprune.analysis import analyze
from onnxprune.analysis.rules.einsum import parse_equation
from tests.builders import GraphBuilder
from tests.oracle import load, node_input_shape, prune_and_check

F, HID, OUT = 6, 16, 5


def two_layers(first: str, second: str, x_shape: list) -> GraphBuilder:
    """x -> Einsum(first, W1 [F, HID]) -> Relu -> Einsum(second, W2 [HID, OUT])."""
    b = GraphBuilder(opset=17)
    x = b.input(x_shape)
    h = b.op("Relu", [b.op("Einsum", [x, b.weight(F, HID)], equation=first, name="fc1")])
    b.output(b.op("Einsum", [h, b.weight(HID, OUT)], equation=second, name="fc2"))
    return b


CASES = [
    pytest.param("...i,ij->...j", "...i,ij->...j", ["N", 7, F], id="ellipsis"),
    pytest.param("bti,ih->bth", "bth,hk->btk", ["N", 7, F], id="bti_ih"),
    pytest.param("bij,jk->bik", "bij,jk->bik", ["N", 7, F], id="bij_jk"),
    pytest.param("...i,ij->...j", "bi,ij->bj", ["N", F], id="ellipsis_2d"),
]


@pytest.mark.parametrize(("first", "second", "shape"), CASES)
def test_linear_einsum_forms_are_pruned(first, second, shape):
    checked = prune_and_check(two_layers(first, second, shape).model(), 0.4)
    (group,) = checked.analysis.prunable_groups
    kept = checked.plan.kept[group.index]
    assert group.sources[0].kind == "Einsum output" and kept < HID
    assert node_input_shape(checked.pruned, "fc1", 1) == (F, kept)
    assert node_input_shape(checked.pruned, "fc2", 1) == (kept, OUT)


def test_constant_first_operand():
    b = GraphBuilder(opset=17)
    x = b.input(["N", F])
    h = b.op("Relu", [b.op("Einsum", [b.weight(HID, F), x], equation="ji,bi->bj", name="fc1")])
    b.output(b.op("Einsum", [h, b.weight(HID, OUT)], equation="bj,jk->bk", name="fc2"))
    checked = prune_and_check(b.model(), 0.4)
    kept = checked.plan.kept[checked.analysis.prunable_groups[0].index]
    assert node_input_shape(checked.pruned, "fc1", 0) == (kept, F)


G, GIN = 4, 3


def grouped(prune_groups: bool) -> GraphBuilder:
    """Grouped linears ``btgi,gih->btgh``: with ``prune_groups`` the input comes from a
    linear whose features are split into ``G`` groups (the group axis carries the
    layout: whole groups are pruned); else the hidden features ``h`` are the source."""
    b = GraphBuilder(opset=17)
    x = b.input(["N", 7, G * GIN] if not prune_groups else ["N", 7, F])
    if prune_groups:
        x = b.op("MatMul", [x, b.weight(F, G * GIN)], name="proj")
    x = b.op("Reshape", [x, b.ints([0, 0, G, GIN])])
    h = b.op("Einsum", [x, b.weight(G, GIN, HID)], equation="btgi,gih->btgh", name="grouped")
    h = b.op("Relu", [h])
    if prune_groups:
        y = b.op("Reshape", [h, b.ints([0, 0, G * HID])])
        b.output(b.op("MatMul", [y, b.weight(G * HID, OUT)], name="head"))
    else:
        b.output(b.op("Einsum", [h, b.weight(G, HID, OUT)], equation="btgh,gho->bto",
                      name="merge"))
    return b


def test_grouped_einsum_prunes_hidden_features_of_every_group():
    checked = prune_and_check(grouped(False).model(), 0.4)
    (group,) = checked.analysis.prunable_groups
    kept = checked.plan.kept[group.index]
    assert kept < HID
    assert node_input_shape(checked.pruned, "grouped", 1) == (G, GIN, kept)
    assert node_input_shape(checked.pruned, "merge", 1) == (G, kept, OUT)


def test_grouped_einsum_couples_the_group_axis():
    checked = prune_and_check(grouped(True).model(), 0.3)
    group = next(g for g in checked.analysis.prunable_groups if g.sources[0].node == "proj")
    kept = checked.plan.kept[group.index]
    assert kept < G and group.unit_size == GIN  # a unit is one group of GIN features
    assert node_input_shape(checked.pruned, "grouped", 1) == (kept, GIN, HID)
    assert node_input_shape(checked.pruned, "proj", 1) == (F, kept * GIN)


@pytest.mark.parametrize(("equation", "reason"), [
    ("bij,bjk->bik", "has no constant operand"),
    ("bii,ij->bj", "repeats a letter"),
], ids=["two_runtime_operands", "diagonal"])
def test_other_forms_block_with_the_equation(equation, reason):
    b = GraphBuilder(opset=17)
    x = b.input(["N", F, F])
    h = b.op("MatMul", [x, b.weight(F, F)], name="fc")
    other = h if "bjk" in equation else b.weight(F, OUT)
    b.output(b.op("Einsum", [h, other], equation=equation, name="e"))
    group = next(g for g in analyze(load(b.model())).groups if g.sources[0].node == "fc")
    assert not group.prunable
    assert any(f"Einsum '{equation}' {reason}" in r for r in group.reasons)


def test_parse_equation_expands_ellipsis_and_implicit_output():
    parsed = parse_equation("...i,ij", [3, 2])
    assert parsed.operands == ("YZi", "ij") and parsed.output == "YZj"
    assert isinstance(parse_equation("ij,jk->ik", [2]), str)
