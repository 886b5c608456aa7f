"""Unit tests of ``analysis/rules/reshape_math.py``: which output axis of a Reshape or
Flatten carries the channel axis (merges), head splits, and ``-1`` target entries."""

from __future__ import annotations

import numpy as np
import pytest

from onnxprune.analysis.rules.reshape_math import (
    MergeMap,
    SplitMap,
    fill_minus_one,
    merge_map,
    merged_ids,
    split_map,
)


# -- merges --------------------------------------------------------------------------------
@pytest.mark.parametrize(("in_shape", "out_shape", "axis", "expected"), [
    # Flatten of NCHW: channel c owns H*W consecutive features
    ((None, 8, 4, 4), (None, 128), 1, MergeMap(out_axis=1, inner=16, size=128)),
    # unchanged axis: a reshape that only touches other axes
    ((None, 8, 4, 4), (None, 8, 16), 1, MergeMap(out_axis=1, inner=1, size=8)),
    # channels last merged with the axis before them: position p holds channel p % C
    ((2, 3, 8), (6, 8), 2, MergeMap(out_axis=1, inner=1, size=8)),
    ((2, 3, 8), (48,), 2, MergeMap(out_axis=0, inner=1, size=48)),
    # the channel axis in the middle of a run: inner counts only the axes after it
    ((None, 2, 8, 3), (None, 48), 2, MergeMap(out_axis=1, inner=3, size=48)),
    # symbolic leading axes spoil the front alignment; the back alignment works
    ((None, None, 8, 2), (None, None, 16), 2, MergeMap(out_axis=2, inner=2, size=16)),
], ids=["flatten", "untouched", "merge_before", "merge_all", "middle", "from_the_back"])
def test_merge_map(in_shape, out_shape, axis, expected):
    assert merge_map(in_shape, out_shape, axis) == expected


@pytest.mark.parametrize(("in_shape", "out_shape", "axis", "reason"), [
    ((None, 8, 4), (None, 2, 4, 4), 1, "splits the channel axis into several axes"),
    ((None, 8, 4), (None, 32), 0, "merges the channel axis with a dynamic axis"),
    ((None, 8), (None, None), 1, "cannot be aligned around the channel axis"),
], ids=["split", "dynamic", "misaligned"])
def test_merge_map_reasons(in_shape, out_shape, axis, reason):
    result = merge_map(in_shape, out_shape, axis)
    assert isinstance(result, str) and reason in result


def test_merged_ids_repeat_each_channel_over_its_inner_block():
    ids = np.array([10, 11, 12])
    flat = merged_ids(ids, MergeMap(out_axis=1, inner=2, size=6))
    assert flat.tolist() == [10, 10, 11, 11, 12, 12]
    tiled = merged_ids(ids, MergeMap(out_axis=0, inner=1, size=6))  # (2, 3) -> 6
    assert tiled.tolist() == [10, 11, 12, 10, 11, 12]
    both = merged_ids(ids, MergeMap(out_axis=0, inner=2, size=12))  # (2, 3, 2) -> 12
    assert both.tolist() == [10, 10, 11, 11, 12, 12] * 2


# -- head splits ---------------------------------------------------------------------------
@pytest.mark.parametrize(("in_shape", "out_shape", "axis", "expected"), [
    ((None, None, 32), (None, None, 4, 8), 2, SplitMap(out_axis=2, heads=4, width=8)),
    ((None, 12, 5), (None, 3, 4, 5), 1, SplitMap(out_axis=1, heads=3, width=4)),
    ((2, 6), (2, 6, 1), 1, None),      # not a split into two axes
    ((None, 32), (None, 4, 4, 2), 1, None),  # three axes
    ((None, 8, 4), (None, 32), 1, None),     # a merge
])
def test_split_map(in_shape, out_shape, axis, expected):
    assert split_map(in_shape, out_shape, axis) == expected


def test_split_map_needs_static_heads_and_width():
    assert split_map((None, 32), (None, None, 8), 1) is None


# -- -1 entries ----------------------------------------------------------------------------
@pytest.mark.parametrize(("in_shape", "entries", "expected"), [
    ((None, 8, 4, 4), [None, -1], [None, 128]),
    ((2, 8, 4), [-1, 4], [16, 4]),
    ((2, 8, 4), [-1, 5], [None, 5]),              # no exact division
    ((None, 8), [None, None, -1], [None, None, None]),  # dynamic counts differ
    ((2, 8), [-1, -1], [None, None]),             # two -1 entries: nothing computed
    ((2, 8), [4, 4], [4, 4]),                     # no -1 at all
])
def test_fill_minus_one(in_shape, entries, expected):
    assert fill_minus_one(in_shape, entries) == expected
