"""Axis bookkeeping for Reshape/Flatten: which output axis carries a channel axis.

Rule: with prefix products ``P_in`` and ``P_out`` of the two shapes, the channel
axis ``a`` lies in the smallest run of input axes ``[i0, i1)`` and output axes
``[o0, o1)`` bounded by equal prefix products. When the output run is a single
axis the reshape *merges* the channel axis with its neighbours: position ``p`` of
that output axis holds channel ``(p // inner) % C`` where ``inner`` is the product
of the merged input axes after ``a``. Symbolic dimensions may not be merged.
A channel axis split into exactly two static axes ``(H, D)`` with ``H * D = C``,
the input run being the channel axis alone, is a *head split* (``split_map``):
channel ``h * D + d`` moves to position ``h`` of the first axis. Any other split
is reported as not supported, with the reason.

``fill_minus_one``: a ``-1`` target entry is computed from the other entries when
the dynamic entries pair one-to-one with the input's dynamic dimensions.
"""

from __future__ import annotations

__all__ = ["MergeMap", "SplitMap", "fill_minus_one", "merge_map", "merged_ids", "split_map"]

import dataclasses
import math

import numpy as np

_SYMBOL = 2_147_483_629  # a prime no real dimension product will hit by chance


@dataclasses.dataclass(frozen=True)
class MergeMap:
    out_axis: int
    inner: int
    size: int  # product of the merged input axes


@dataclasses.dataclass(frozen=True)
class SplitMap:
    out_axis: int  # the head axis; the head width follows it
    heads: int
    width: int


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


def split_map(in_shape: tuple[int | None, ...], out_shape: tuple[int | None, ...],
              axis: int) -> SplitMap | None:
    """The head split of channel ``axis`` (see module rule), or ``None``."""
    found = _align_either_way(tuple(in_shape), tuple(out_shape), axis)
    if found is None:
        return None
    i0, i1, o0, o1 = found
    if (i0, i1) != (axis, axis + 1) or o1 - o0 != 2:
        return None
    heads, width = out_shape[o0], out_shape[o0 + 1]
    if heads is None or width is None or heads * width != in_shape[axis]:
        return None
    return SplitMap(o0, int(heads), int(width))


def fill_minus_one(in_shape: tuple[int | None, ...], entries: list[int | None],
                   ) -> list[int | None]:
    """Output dims from target ``entries`` (``None``: computed at run time).

    The single ``-1`` entry becomes (static input elements) / (static other entries)
    when the input has as many dynamic dims as there are dynamic entries.
    """
    if entries.count(-1) != 1 or any(d is not None and d < 0 and d != -1 for d in entries):
        return [None if d == -1 else d for d in entries]
    others = [d for d in entries if d != -1]
    if sum(d is None for d in in_shape) != sum(d is None for d in others):
        return [None if d == -1 else d for d in entries]
    known_in = math.prod(d for d in in_shape if d is not None)
    known_out = math.prod(d for d in others if d is not None)
    value = known_in // known_out if known_out and known_in % known_out == 0 else None
    return [value if d == -1 else d for d in entries]
