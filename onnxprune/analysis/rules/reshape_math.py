"""Axis bookkeeping for Reshape/Flatten: which output axis carries a channel axis.

Rule: with prefix products ``P_in`` and ``P_out`` of the two shapes, the channel
axis ``a`` lies in the smallest run of input axes ``[i0, i1)`` and output axes
``[o0, o1)`` bounded by equal prefix products. When the output run is a single
axis the reshape *merges* the channel axis with its neighbours: position ``p`` of
that output axis holds channel ``(p // inner) % C`` where ``inner`` is the product
of the merged input axes after ``a``. Symbolic dimensions may not be merged.
Any other case (a channel axis split into several axes) is reported as not
supported, with the reason.
"""

from __future__ import annotations

__all__ = ["MergeMap", "merge_map", "merged_ids"]

import dataclasses
import math

import numpy as np

_SYMBOL = 2_147_483_629  # a prime no real dimension product will hit by chance


@dataclasses.dataclass(frozen=True)
class MergeMap:
    out_axis: int
    inner: int
    size: int  # product of the merged input axes


def _prefix(shape: tuple[int | None, ...]) -> list[int]:
    out = [1]
    for d in shape:
        out.append(out[-1] * (d if d is not None else _SYMBOL))
    return out


def _align(in_shape, out_shape, axis: int) -> tuple[int, int, int, int] | None:
    """Input run ``[i0, i1)`` and output run ``[o0, o1)`` around ``axis`` (prefix products)."""
    p_in, p_out = _prefix(in_shape), _prefix(out_shape)
    common = set(p_in) & set(p_out)
    lows = [b for b in common if b <= p_in[axis] and p_in[axis] % b == 0]
    highs = [b for b in common if b >= p_in[axis + 1] and b % p_in[axis + 1] == 0]
    if not lows or not highs:
        return None
    b0, b1 = max(lows), min(highs)
    i0 = max(k for k in range(axis + 1) if p_in[k] == b0)
    i1 = min((k for k in range(axis + 1, len(p_in)) if p_in[k] == b1), default=None)
    o0 = max(k for k in range(len(p_out)) if p_out[k] == b0)
    o1 = min((k for k in range(o0 + 1, len(p_out)) if p_out[k] == b1), default=None)
    if i1 is None or o1 is None:
        return None
    return i0, i1, o0, o1


def _align_either_way(in_shape, out_shape, axis):
    """Align from the front; if symbolic leading dims spoil that, from the back."""
    found = _align(in_shape, out_shape, axis)
    if found is not None:
        return found
    n, m = len(in_shape), len(out_shape)
    found = _align(in_shape[::-1], out_shape[::-1], n - 1 - axis)
    if found is None:
        return None
    i0, i1, o0, o1 = found
    return n - i1, n - i0, m - o1, m - o0


def merge_map(in_shape: tuple[int | None, ...], out_shape: tuple[int | None, ...],
              axis: int) -> MergeMap | str:
    """Map channel ``axis`` of ``in_shape`` into ``out_shape`` (see module rule)."""
    found = _align_either_way(tuple(in_shape), tuple(out_shape), axis)
    if found is None:
        return "input and output shapes cannot be aligned around the channel axis"
    i0, i1, o0, o1 = found
    if o1 - o0 != 1:
        return "splits the channel axis into several axes"
    merged = in_shape[i0:i1]
    if any(d is None for d in merged):
        return "merges the channel axis with a dynamic axis"
    inner = math.prod(in_shape[axis + 1:i1])  # type: ignore[arg-type]
    return MergeMap(out_axis=o0, inner=inner, size=math.prod(merged))  # type: ignore[arg-type]


def merged_ids(ids: np.ndarray, mapping: MergeMap) -> np.ndarray:
    positions = np.arange(mapping.size)
    return ids[(positions // mapping.inner) % len(ids)]
