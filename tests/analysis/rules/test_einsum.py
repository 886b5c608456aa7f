"""Unit tests of ``analysis/rules/einsum.py`` on hand-built graphs.

The oracle runs of the linear forms are in ``tests/analysis/test_einsum.py``; these
pin each numbered case: 1 contracted letters couple ``W`` as inputs, 2 free and shared
letters pass the layout, 3 the created letter is the source, 4 every blocked form
with its reason, 5 the MACs; and ``parse_equation``'s edge cases.
"""

from __future__ import annotations

import pytest

from onnxprune.analysis.rules.einsum import parse_equation
from tests.builders import GraphBuilder
from tests.oracle import node_input_shape, prune_and_check
from tests.rule_checks import (
    analyzed,
    coupled,
    layout_ids,
    macs,
    reasons,
    removing,
    source_ids,
)

F, HID, OUT = 4, 6, 3


def test_contracted_letter_couples_w_and_created_letter_is_the_source():
    b = GraphBuilder(opset=17)
    x = b.input(["N", 5, F])
    h = b.op("Relu", [b.op("Einsum", [x, b.weight(F, HID)], equation="bti,ih->bth",
                           name="fc1")])
    b.output(b.op("Einsum", [b.weight(OUT, HID), h], equation="oh,bth->bto", name="fc2"))
    analysis = analyzed(b.model())
    fc1, fc2 = source_ids(analysis, "fc1"), source_ids(analysis, "fc2")
    assert coupled(analysis, "fc1") == {(1, 1): ("out", fc1)}
    assert coupled(analysis, "fc2") == {(0, 1): ("in", fc1), (0, 0): ("out", fc2)}
    assert layout_ids(analysis, "fc1_out") == (2, fc1)
    assert layout_ids(analysis, "fc2_out") == (2, fc2)


def test_a_free_letter_passes_the_layout_and_creates_no_source():
    """``bcl,lk->bck`` on a Conv1d output: the channels ``c`` ride through."""
    b = GraphBuilder(opset=17)
    x = b.input(["N", 2, 5])
    h = b.op("Relu", [b.op("Conv", [x, b.weight(HID, 2, 1)], name="c1")])
    h = b.op("Einsum", [h, b.weight(5, 7)], equation="bcl,lk->bck", name="time")
    b.output(b.op("Conv", [h, b.weight(OUT, HID, 1)], name="c2"))
    analysis = analyzed(b.model())
    assert layout_ids(analysis, "time_out") == (1, source_ids(analysis, "c1"))
    assert not [s for s in analysis.ctx.sources if s.node == "time"]
    assert coupled(analysis, "time") == {}
    checked = prune_and_check(b.model(), 0.3)
    assert node_input_shape(checked.pruned, "c2", 1)[1] < HID


def test_a_shared_letter_couples_w_as_const_and_passes_the_layout():
    b = GraphBuilder(opset=17)
    x = b.input(["N", 5, F])
    groups = b.op("Reshape", [b.op("MatMul", [x, b.weight(F, 3 * 2)], name="proj"),
                              b.ints([0, 0, 3, 2])])  # [N, T, 3 groups, 2]
    h = b.op("Einsum", [groups, b.weight(3, 2, HID)], equation="btgi,gih->btgh", name="grp")
    b.output(h)
    analysis = analyzed(b.model())
    (role, ids), = [v for k, v in coupled(analysis, "grp").items() if k == (1, 0)]
    assert role == "const" and len(ids) == 3
    assert layout_ids(analysis, "grp_out")[0] == 2


def test_implicit_output_equation():
    """No ``->``: the output is the letters used once, sorted (``bi,ih`` gives ``bh``)."""
    b = GraphBuilder(opset=17)
    x = b.input(["N", F])
    h = b.op("Relu", [b.op("Einsum", [x, b.weight(F, HID)], equation="bi,ih", name="fc1")])
    b.output(b.op("Einsum", [h, b.weight(HID, OUT)], equation="bh,ho", name="fc2"))
    analysis = analyzed(b.model())
    assert layout_ids(analysis, "fc1_out") == (1, source_ids(analysis, "fc1"))
    checked = prune_and_check(b.model(), 0.4)
    assert node_input_shape(checked.pruned, "fc2", 1)[0] < HID


# -- case 4: blocked forms ---------------------------------------------------------------
def _after_linear(b: GraphBuilder, equation: str, *others: str, x_shape=("N", 5, F)) -> None:
    x = b.input(list(x_shape))
    h = b.op("MatMul", [x, b.weight(x_shape[-1], HID)], name="fc")
    b.output(b.op("Einsum", [h, *others], equation=equation, name="e"))


def test_two_constant_operands_create_no_source():
    """A product of two constants (folded by canonicalize in a real load) is no layer."""
    b = GraphBuilder(opset=17)
    x = b.input(["N", HID])
    h = b.op("Relu", [b.op("MatMul", [x, b.weight(HID, HID)], name="fc")])
    w = b.op("Einsum", [b.weight(HID, 2), b.weight(2, OUT)], equation="ij,jk->ik", name="e")
    b.output(b.op("MatMul", [h, w], name="mm"))
    analysis = analyzed(b.model())
    assert [s.node for s in analysis.ctx.sources] == ["fc"]
    assert layout_ids(analysis, "e_out") is None


def test_three_operands_block():
    b = GraphBuilder(opset=17)
    _after_linear(b, "bth,hk,kj->btj", b.weight(HID, 2), b.weight(2, OUT))
    analysis = analyzed(b.model())
    assert "Einsum 'e': Einsum 'bth,hk,kj->btj' has other than two operands" in reasons(
        analysis, "fc")


def test_an_ellipsis_in_the_constant_operand_blocks():
    b = GraphBuilder(opset=17)
    _after_linear(b, "bth,...hk->btk", b.weight(HID, OUT))
    analysis = analyzed(b.model())
    assert "has '...' in the constant operand" in reasons(analysis, "fc")


def test_several_created_letters_block():
    b = GraphBuilder(opset=17)
    _after_linear(b, "bth,hjk->btjk", b.weight(HID, 2, OUT))
    analysis = analyzed(b.model())
    assert "Einsum 'bth,hjk->btjk' creates features on several axes (j, k)" in reasons(
        analysis, "fc")
    assert not [s for s in analysis.ctx.sources if s.node == "e"]


@pytest.mark.parametrize(("equation", "ranks", "reason"), [
    ("ij,jk->ik", [2], "operand count differs from the equation"),
    ("...i,ij->...j", [None, 2], "rank unknown under '...'"),
    ("...Zi,ij->...j", [3, 2], "'...' next to capital letters"),
])
def test_parse_equation_reasons(equation, ranks, reason):
    assert parse_equation(equation, ranks) == reason


def test_parse_equation_pads_shorter_ellipses():
    parsed = parse_equation("...i,...ij->...j", [4, 3])
    assert parsed.operands == ("XYZi", "Zij") and parsed.output == "XYZj"


# -- case 5: MACs --------------------------------------------------------------------------
def test_macs_are_output_elements_times_contracted_sizes():
    b = GraphBuilder(opset=17)
    x = b.input([1, 5, F])
    h = b.op("Relu", [b.op("Einsum", [x, b.weight(F, HID)], equation="bti,ih->bth",
                           name="fc1")])
    b.output(b.op("Einsum", [h, b.weight(HID, OUT)], equation="bth,ho->bto", name="fc2"))
    analysis = analyzed(b.model())
    assert macs(analysis, "fc1") == 5 * HID * F
    assert macs(analysis, "fc2") == 5 * OUT * HID
    assert macs(analysis, "fc2", removing(analysis, "fc1", 2)) == 5 * OUT * (HID - 2)
    assert macs(analysis, "fc1", removing(analysis, "fc1", 2)) == 5 * (HID - 2) * F
