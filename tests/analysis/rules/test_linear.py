"""Unit tests of ``analysis/rules/linear.py`` (Gemm, MatMul, fused attention).

Cases of the module docstring: 1 input features coupled to B's K axis (transA/transB),
2 a layout on a row/batch axis passes through, 3 output features as a source with
the bias and ``Transpose(W)`` weights, 4 activation x activation MatMuls (a-d),
6 com.microsoft attention as a barrier; the quantized weights of case 5 are in
``test_quant.py``. Plus the MACs both rules report.
"""

from __future__ import annotations

import numpy as np
import pytest

from tests.builders import GraphBuilder
from tests.oracle import node_input_shape, prune_and_check
from tests.rule_checks import (
    analyzed,
    block_reasons,
    coupled,
    group_of,
    layout_ids,
    macs,
    reasons,
    removing,
    source_ids,
)

K, HID, OUT = 6, 10, 4


# -- case 1 and 3: Gemm ------------------------------------------------------------------
@pytest.mark.parametrize(("trans_a", "trans_b"), [(0, 0), (0, 1), (1, 0), (1, 1)],
                         ids=["plain", "transB", "transA", "both"])
def test_gemm_couples_k_and_n_axes_for_every_transpose_flag(trans_a, trans_b):
    b = GraphBuilder()
    x = b.input(["N", K])
    w1 = b.weight(*((HID, K) if trans_b else (K, HID)))
    h = b.op("Relu", [b.op("Gemm", [x, w1, b.weight(HID)], name="fc1", transB=trans_b)])
    if trans_a:
        h = b.op("Transpose", [h], perm=[1, 0])  # [HID, N]: the features on axis 0
    w2 = b.weight(*((OUT, HID) if trans_b else (HID, OUT)))
    b.output(b.op("Gemm", [h, w2], name="fc2", transA=trans_a, transB=trans_b))
    analysis = analyzed(b.model())
    fc1, fc2 = source_ids(analysis, "fc1"), source_ids(analysis, "fc2")
    k_axis, n_axis = (1, 0) if trans_b else (0, 1)
    assert coupled(analysis, "fc1") == {(1, n_axis): ("out", fc1), (2, 0): ("bias", fc1)}
    assert coupled(analysis, "fc2") == {(1, k_axis): ("in", fc1), (1, n_axis): ("out", fc2)}
    checked = prune_and_check(b.model(), 0.4)
    kept = checked.plan.kept[group_of(checked.analysis, "fc1").index]
    assert kept < HID
    assert node_input_shape(checked.pruned, "fc2", 1)[k_axis] == kept


@pytest.mark.parametrize("bias_shape", [(1, HID), (1,), ()], ids=["row", "one", "scalar"])
def test_gemm_bias_is_coupled_only_with_n_entries_on_its_last_axis(bias_shape):
    b = GraphBuilder()
    x = b.input([3, K])
    bias = b.init(np.ones(bias_shape, np.float32))
    h = b.op("Relu", [b.op("Gemm", [x, b.weight(K, HID), bias], name="fc1")])
    b.output(b.op("Gemm", [h, b.weight(HID, OUT)], name="fc2"))
    analysis = analyzed(b.model())
    expected = {(1, 1): ("out", source_ids(analysis, "fc1"))}
    if bias_shape == (1, HID):
        expected[(2, 1)] = ("bias", source_ids(analysis, "fc1"))
    assert coupled(analysis, "fc1") == expected
    checked = prune_and_check(b.model(), 0.4, batches=(3,))
    assert node_input_shape(checked.pruned, "fc2", 1)[0] < HID


def test_gemm_blocks_a_layout_on_the_row_axis_of_a():
    b = GraphBuilder()
    x = b.input([HID, K])
    h = b.op("Transpose", [b.op("Gemm", [x, b.weight(K, HID)], name="fc1")], perm=[1, 0])
    b.output(b.op("Gemm", [h, b.weight(HID, OUT)], name="fc2"))  # rows of A are features
    analysis = analyzed(b.model())
    assert "Gemm 'fc2': channels on the row axis of A" in reasons(analysis, "fc1")


def test_gemm_with_a_runtime_weight_blocks_its_inputs():
    b = GraphBuilder()
    x = b.input(["N", K])
    h = b.op("Gemm", [x, b.weight(K, HID)], name="fc1")
    b.output(b.op("Gemm", [h, b.input([HID, OUT], name="w_dynamic")], name="fc2"))
    analysis = analyzed(b.model())
    assert "Gemm 'fc2': weight B is not a constant initializer" in reasons(analysis, "fc1")
    assert [s.node for s in analysis.ctx.sources] == ["fc1"]


def test_gemm_with_a_runtime_bias_blocks_its_outputs():
    b = GraphBuilder()
    x = b.input(["N", K])
    h = b.op("Gemm", [x, b.weight(K, HID), b.input([HID], name="bias")], name="fc1")
    b.output(b.op("Gemm", [h, b.weight(HID, OUT)], name="fc2"))
    analysis = analyzed(b.model())
    assert "Gemm 'fc1': bias C is not a constant" in reasons(analysis, "fc1")
    assert not group_of(analysis, "fc1").prunable


def test_gemm_macs_follow_kept_inputs_and_outputs():
    b = GraphBuilder()
    x = b.input([1, K])
    h = b.op("Relu", [b.op("Gemm", [x, b.weight(K, HID)], name="fc1")])
    b.output(b.op("Gemm", [h, b.weight(HID, OUT)], name="fc2"))
    analysis = analyzed(b.model())
    assert macs(analysis, "fc1") == HID * K
    assert macs(analysis, "fc2") == OUT * HID
    assert macs(analysis, "fc2", removing(analysis, "fc1", 3)) == OUT * (HID - 3)
    assert macs(analysis, "fc1", removing(analysis, "fc1", 3)) == (HID - 3) * K


# -- case 1-3: MatMul with a constant weight ---------------------------------------------
def test_matmul_on_a_3d_input_creates_the_source_on_the_last_axis():
    b = GraphBuilder()
    x = b.input(["N", 5, K])
    h = b.op("Relu", [b.op("MatMul", [x, b.weight(K, HID)], name="fc1")])
    b.output(b.op("MatMul", [h, b.weight(HID, OUT)], name="fc2"))
    analysis = analyzed(b.model())
    fc1 = source_ids(analysis, "fc1")
    assert layout_ids(analysis, "fc1_out") == (2, fc1)
    assert coupled(analysis, "fc2")[(1, 0)] == ("in", fc1)
    assert analysis.ctx.sources[0].kind == "MatMul output"


def test_matmul_passes_a_layout_on_a_row_axis_and_creates_no_source():
    """``[N, C, L] @ W[L, M]``: the channels ride along axis 1 (a conv1d-style tensor)."""
    b = GraphBuilder()
    x = b.input(["N", 3, 5])
    h = b.op("Relu", [b.op("Conv", [x, b.weight(HID, 3, 1)], name="c1")])  # [N, HID, 5]
    h = b.op("MatMul", [h, b.weight(5, 7)], name="time_mix")
    b.output(b.op("Conv", [h, b.weight(OUT, HID, 1)], name="c2"))
    analysis = analyzed(b.model())
    assert layout_ids(analysis, "time_mix_out") == (1, source_ids(analysis, "c1"))
    assert not [s for s in analysis.ctx.sources if s.node == "time_mix"]
    assert not coupled(analysis, "time_mix")
    checked = prune_and_check(b.model(), 0.4)
    assert node_input_shape(checked.pruned, "c2", 1)[1] < HID


def test_matmul_with_a_transposed_weight_read_twice_is_not_a_weight():
    """``Transpose(W)`` shared by two MatMuls is not sliced for one of them: the layout
    on the contracted axis meets an untracked operand and is blocked."""
    b = GraphBuilder()
    x = b.input(["N", K])
    h = b.op("MatMul", [x, b.weight(K, HID)], name="fc1")
    wt = b.op("Transpose", [b.weight(OUT, HID)], perm=[1, 0])
    b.output(b.op("MatMul", [h, wt], name="fc2"))
    b.output(b.op("MatMul", [b.op("Relu", [h]), wt], name="fc3"))
    analysis = analyzed(b.model())
    assert "MatMul 'fc2' contracts channels with a tensor whose matching axis is not " \
           "tracked" in reasons(analysis, "fc1")


def test_matmul_with_a_non_2d_transposed_weight_is_no_weight():
    b = GraphBuilder()
    x = b.input([2, 3, K])
    h = b.op("MatMul", [x, b.weight(K, HID)], name="fc1")
    wt = b.op("Transpose", [b.weight(2, OUT, HID)], perm=[0, 2, 1])
    b.output(b.op("MatMul", [h, wt], name="fc2"))
    analysis = analyzed(b.model())
    assert not group_of(analysis, "fc1").prunable
    assert "MatMul 'fc2' contracts channels" in reasons(analysis, "fc1")


def test_matmul_macs_count_the_kept_reduction_axis():
    b = GraphBuilder()
    x = b.input([1, 5, K])
    h = b.op("Relu", [b.op("MatMul", [x, b.weight(K, HID)], name="fc1")])
    b.output(b.op("MatMul", [h, b.weight(HID, OUT)], name="fc2"))
    analysis = analyzed(b.model())
    assert macs(analysis, "fc2") == 5 * OUT * HID
    assert macs(analysis, "fc2", removing(analysis, "fc1", 4)) == 5 * OUT * (HID - 4)


# -- case 4: activation x activation -----------------------------------------------------
def _two_projections(b: GraphBuilder) -> tuple[str, str]:
    x = b.input(["N", 5, K])
    return (b.op("MatMul", [x, b.weight(K, HID)], name="a"),
            b.op("MatMul", [x, b.weight(K, HID)], name="b"))


def test_contracted_layouts_on_both_inputs_are_merged():
    """``A @ B^T`` with both operands' features on the contracted axis (Q @ K^T)."""
    b = GraphBuilder()
    qa, kb = _two_projections(b)
    scores = b.op("MatMul", [qa, b.op("Transpose", [kb], perm=[0, 2, 1])], name="qk")
    b.output(b.op("MatMul", [scores, b.weight(5, OUT)], name="head"))
    analysis = analyzed(b.model())
    assert group_of(analysis, "a") is group_of(analysis, "b")
    assert layout_ids(analysis, "qk_out") is None  # contracted away
    checked = prune_and_check(b.model(), 0.4)
    assert node_input_shape(checked.pruned, "a", 1)[1] == node_input_shape(
        checked.pruned, "b", 1)[1] < HID


def test_a_contracted_layout_on_one_input_only_blocks():
    b = GraphBuilder()
    x = b.input(["N", 5, K])
    qa = b.op("MatMul", [x, b.weight(K, HID)], name="a")
    other = b.input(["N", HID, 5], name="other")
    b.output(b.op("MatMul", [qa, other], name="mm"))
    analysis = analyzed(b.model())
    assert "MatMul 'mm' contracts channels with a tensor whose matching axis is not " \
           "tracked" in reasons(analysis, "a")


def test_row_and_column_layouts_pass_to_the_output():
    """A's features on its row axis (``A^T @ X``) and B's on its column axis (``X @ B``)."""
    b = GraphBuilder()
    qa, kb = _two_projections(b)
    x = b.input(["N", 5, 5], name="mix")
    rows = b.op("MatMul", [b.op("Transpose", [qa], perm=[0, 2, 1]), x], name="rows")
    cols = b.op("MatMul", [x, kb], name="cols")
    b.output(b.op("MatMul", [b.op("Transpose", [rows], perm=[0, 2, 1]),
                             b.weight(HID, OUT)], name="h1"))
    b.output(b.op("MatMul", [cols, b.weight(HID, OUT)], name="h2"))
    analysis = analyzed(b.model())
    assert layout_ids(analysis, "rows_out") == (1, source_ids(analysis, "a"))
    assert layout_ids(analysis, "cols_out") == (2, source_ids(analysis, "b"))
    checked = prune_and_check(b.model(), 0.4)
    assert node_input_shape(checked.pruned, "h1", 1)[0] < HID
    assert node_input_shape(checked.pruned, "h2", 1)[0] < HID


def test_layouts_landing_on_two_output_axes_block():
    b = GraphBuilder()
    qa, kb = _two_projections(b)
    outer = b.op("MatMul", [b.op("Transpose", [qa], perm=[0, 2, 1]), kb], name="outer")
    b.output(outer)
    analysis = analyzed(b.model())
    for source in ("a", "b"):
        assert "MatMul 'outer': inputs carry channels on different output axes" in reasons(
            analysis, source)


def test_a_batch_layout_passes_when_the_other_input_broadcasts():
    """Channels on a batch axis of A, B ``[1, L, M]``: every channel uses the same B."""
    b = GraphBuilder()
    x = b.input(["N", 3, 5])
    h = b.op("Relu", [b.op("Conv", [x, b.weight(HID, 3, 1)], name="c1")])  # [N, HID, 5]
    h = b.op("Unsqueeze", [h, b.ints([3])])  # [N, HID, 5, 1]
    mix = b.op("Unsqueeze", [b.input([1, 7], name="row"), b.ints([0])])  # [1, 1, 7]
    y = b.op("MatMul", [h, mix], name="outer")  # [N, HID, 5, 7]
    b.output(b.op("Conv", [y, b.weight(OUT, HID, 1, 1)], name="c2"))
    analysis = analyzed(b.model())
    assert layout_ids(analysis, "outer_out") == (1, source_ids(analysis, "c1"))
    checked = prune_and_check(b.model(), 0.4)
    assert node_input_shape(checked.pruned, "c2", 1)[1] < HID


def test_a_batch_layout_blocks_when_the_other_input_has_that_axis():
    b = GraphBuilder()
    x = b.input(["N", 3, 5])
    h = b.op("Unsqueeze", [b.op("Conv", [x, b.weight(HID, 3, 1)], name="c1"),
                           b.ints([3])])  # [N, HID, 5, 1]
    other = b.input(["N", HID, 1, 7], name="other")
    b.output(b.op("MatMul", [h, other], name="outer"))
    analysis = analyzed(b.model())
    assert "MatMul 'outer': the other input does not broadcast over the channel axis" in \
        reasons(analysis, "c1")


def test_a_one_dimensional_operand_blocks():
    b = GraphBuilder()
    x = b.input(["N", 5, K])
    qa = b.op("MatMul", [x, b.weight(K, HID)], name="a")
    b.output(b.op("MatMul", [qa, b.input([HID], name="vec")], name="mv"))
    analysis = analyzed(b.model())
    assert "MatMul 'mv': ranks unknown or 1-D operand" in reasons(analysis, "a")


def test_activation_matmul_macs():
    b = GraphBuilder()
    qa, kb = _two_projections(b)
    scores = b.op("MatMul", [qa, b.op("Transpose", [kb], perm=[0, 2, 1])], name="qk")
    b.output(b.op("MatMul", [scores, b.weight(5, OUT)], name="head"))
    analysis = analyzed(b.model())
    assert macs(analysis, "qk") == 5 * 5 * HID
    assert macs(analysis, "qk", removing(analysis, "a", 2)) == 5 * 5 * (HID - 2)


# -- case 6: fused attention ---------------------------------------------------------------
@pytest.mark.parametrize("op", ["MultiHeadAttention", "GroupQueryAttention", "PackedAttention",
                                "PackedMultiHeadAttention"])
def test_every_fused_attention_op_is_a_barrier(op):
    b = GraphBuilder(opset=18)
    x = b.input([1, 4, 8])
    q = b.op("MatMul", [x, b.weight(8, 8)], name="q")
    b.output(b.op(op, [q, q, q], domain="com.microsoft", num_heads=2, name="attn"))
    analysis = analyzed(b.model())
    assert f"{op} 'attn': fused com.microsoft attention is a barrier" in block_reasons(analysis)
    assert not group_of(analysis, "q").prunable
