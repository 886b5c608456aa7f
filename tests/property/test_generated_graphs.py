"""Property: on any generated graph, pruning equals masking (or fails with a project error)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from onnxprune.errors import UnreachableTargetError
from tests.oracle import prune_and_check
from tests.property.graphs import conv_graphs, mlp_graphs


def _check(model, target, criterion, metric, round_to):
    try:
        prune_and_check(model, target, criterion=criterion, metric=metric, round_to=round_to)
    except UnreachableTargetError as exc:
        assert exc.maximum < target


@given(model=conv_graphs(), target=st.sampled_from([0.1, 0.3, 0.5]),
       criterion=st.sampled_from(["l1", "l2", "fpgm", "random", "bn_scale"]),
       metric=st.sampled_from(["params", "flops"]), round_to=st.sampled_from([1, 1, 2, 4]))
def test_conv_graphs_prune_equals_mask(model, target, criterion, metric, round_to):
    _check(model, target, criterion, metric, round_to)


@given(model=mlp_graphs(), target=st.sampled_from([0.1, 0.3, 0.5]),
       criterion=st.sampled_from(["l1", "random"]), metric=st.sampled_from(["params", "flops"]))
def test_mlp_graphs_prune_equals_mask(model, target, criterion, metric):
    _check(model, target, criterion, metric, 1)
