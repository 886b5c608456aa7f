"""Magnitude masks, N:M masks, the cubic schedule and prunable-weight discovery."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from onnxprune.planning.schedule import cubic_schedule
from onnxprune.sparsity.masks import apply_masks, magnitude_masks, nm_masks
from onnxprune.sparsity.weights import prunable_weights
from tests.builders import GraphBuilder


def _arrays(seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {"conv": rng.standard_normal((8, 8, 3, 3)).astype(np.float32),
            "fc": rng.standard_normal((16, 12)).astype(np.float32) * 0.1}


def test_cubic_schedule_front_loads_and_ends_on_the_target():
    levels = cubic_schedule(0.9, 4)
    assert levels[-1] == 0.9 and cubic_schedule(0.9, 1) == [0.9]
    steps = np.diff([0.0, *levels])
    assert (steps > 0).all() and (np.diff(steps) < 0).all()  # each step smaller
    assert levels == pytest.approx([0.9 * (1 - (1 - t / 4) ** 3) for t in range(1, 5)])


def test_global_masks_zero_the_smallest_magnitudes_across_layers():
    arrays = _arrays()
    masks = magnitude_masks(arrays, 0.6, "global")
    total = sum(a.size for a in arrays.values())
    zeroed = sum(int((~m).sum()) for m in masks.values())
    assert zeroed == round(0.6 * total)
    dropped = np.concatenate([np.abs(a[~masks[k]]) for k, a in arrays.items()])
    kept = np.concatenate([np.abs(a[masks[k]]) for k, a in arrays.items()])
    assert dropped.max() <= kept.min()
    # one threshold: the small-magnitude layer loses far more than the other
    assert (~masks["fc"]).mean() > 0.95 > (~masks["conv"]).mean()


def test_uniform_scope_prunes_every_layer_to_the_target():
    masks = magnitude_masks(_arrays(), 0.6, "uniform")
    for name, mask in masks.items():
        assert (~mask).sum() == round(0.6 * mask.size), name


def test_masks_only_grow_even_when_weights_move():
    arrays = _arrays()
    first = magnitude_masks(arrays, 0.4)
    moved = {k: a * np.random.default_rng(1).uniform(0.1, 3.0, a.shape).astype(np.float32)
             for k, a in apply_masks(arrays, first).items()}
    second = magnitude_masks(moved, 0.7, previous=first)
    for name in arrays:
        assert not (second[name] & ~first[name]).any()  # nothing pruned comes back
    assert sum((~m).sum() for m in second.values()) == round(0.7 * 768)


def test_apply_masks_writes_exact_zeros_and_keeps_the_rest():
    arrays = _arrays()
    masks = magnitude_masks(arrays, 0.5)
    out = apply_masks(arrays, masks)
    for name, array in arrays.items():
        assert out[name].dtype == array.dtype
        assert (out[name][~masks[name]] == 0).all()
        assert (out[name][masks[name]] == array[masks[name]]).all()


def _groups(array: np.ndarray, axis: int, m: int) -> np.ndarray:
    return np.moveaxis(array, axis, -1).reshape(-1, m)


@settings(max_examples=25, deadline=None)
@given(n_m=st.sampled_from([(2, 4), (1, 4), (2, 8), (1, 2)]), out=st.integers(1, 6),
       blocks=st.integers(1, 4), kernel=st.sampled_from([1, 3]), seed=st.integers(0, 99))
def test_nm_every_run_of_m_input_weights_has_at_least_m_minus_n_zeros(n_m, out, blocks,
                                                                      kernel, seed):
    n, m = n_m
    rng = np.random.default_rng(seed)
    conv = rng.standard_normal((out, blocks * m, kernel, kernel)).astype(np.float32)
    gemm = rng.standard_normal((blocks * m, out)).astype(np.float32)  # MatMul [K, N]
    masks, skipped = nm_masks({"conv": conv, "gemm": gemm}, {"conv": 1, "gemm": 0}, n, m)
    assert not skipped
    for name, axis, array in (("conv", 1, conv), ("gemm", 0, gemm)):
        zeros = (~_groups(masks[name], axis, m)).sum(axis=1)
        assert (zeros == m - n).all()
        pruned = _groups(np.where(masks[name], array, 0), axis, m)
        assert ((pruned == 0).sum(axis=1) >= m - n).all()
        # the zeroed ones are the smallest of their group
        mags, keep = _groups(np.abs(array), axis, m), _groups(masks[name], axis, m)
        for row, k in zip(mags, keep):
            assert row[~k].max() <= row[k].min()


def test_nm_progressive_fraction_and_skipped_layers():
    rng = np.random.default_rng(0)
    arrays = {"w": rng.standard_normal((4, 16, 3, 3)).astype(np.float32),
              "first": rng.standard_normal((4, 3, 3, 3)).astype(np.float32)}
    axes = {"w": 1, "first": 1}
    half, skipped = nm_masks(arrays, axes, 2, 4, fraction=0.5)
    assert "first" in skipped and "not a multiple of 4" in skipped["first"]
    groups = (~_groups(half["w"], 1, 4)).sum(axis=1)
    assert (groups == 2).sum() == len(groups) // 2 and (groups == 0).sum() == len(groups) // 2
    full, _ = nm_masks(arrays, axes, 2, 4, fraction=1.0, previous=half)
    assert not (full["w"] & ~half["w"]).any()
    assert ((~_groups(full["w"], 1, 4)).sum(axis=1) == 2).all()


def test_prunable_weights_and_their_input_axes():
    b = GraphBuilder()
    x = b.input(["N", 8, 4, 4])
    h = b.op("BatchNormalization", [b.conv(x, 8, 8, name="conv"), b.positive(8),
                                    b.weight(8), b.weight(8), b.positive(8)])
    f = b.op("Flatten", [h])
    g = b.op("Gemm", [f, b.weight(16, 128), b.weight(16)], name="fc_t", transB=1)
    w = b.weight(16, 12)
    g = b.op("MatMul", [g, w], name="mm")
    t = b.op("Transpose", [b.weight(6, 12)], perm=[1, 0])
    g = b.op("MatMul", [g, t], name="mm_t")
    g = b.op("Gemm", [g, b.weight(6, 5)], name="fc_skip")
    b.output(g)
    found = {p.layer: (p.op, p.in_axis, p.shape) for p in prunable_weights(b.model())}
    assert found == {"conv": ("Conv", 1, (8, 8, 3, 3)), "fc_t": ("Gemm", 1, (16, 128)),
                     "mm": ("MatMul", 0, (16, 12)), "mm_t": ("MatMul", 1, (6, 12)),
                     "fc_skip": ("Gemm", 0, (6, 5))}
    ignored = {p.layer for p in prunable_weights(b.model(), ignore=("fc_*", "conv"))}
    assert ignored == {"mm", "mm_t"}
