"""``lsq`` recovery: refit each consumer's remaining weights and bias by least squares.

Rule: for a consumer with original output ``T = W x + b`` (original model) and the
input ``z`` it receives in the *pruned, already refitted* model (kept channels only),
solve

    min_{W', b'}  sum ||T_kept - (W' z + b')||^2 + lam * ||W' - W0||^2

where ``W0`` is its pruned weight (kept outputs x kept inputs): ridge regression
pulled toward the pruned weights, not toward zero. Closed form on accumulated
``Z^T Z`` and ``Z^T T`` (``z`` augmented with a constant 1 for the bias); ``lam`` is
``ridge`` times the mean diagonal of ``Z^T Z``. Cases:

1. Gemm / MatMul: ``z`` is the input row (MatMul: every row of the flattened leading axes).
2. Conv (``group == 1``, any spatial rank, pads/strides/dilations/auto_pad): ``z`` is the
   input patch (im2col) of a sample of at most ``max_rows`` output positions per batch.
   A patch longer than ``max_features`` is not refitted on its weights: only ``b'`` is.
3. Consumers are refitted in waves: a consumer is fitted after every consumer
   upstream of it, so it sees (and corrects) their remaining error.
4. When the removed channels are exactly zero on the data, ``T = W0 z + b0`` and the
   solution is ``W0, b0``: recovery leaves the model as pruned (up to rounding).
5. The ONNX Runtime sessions run in process; when calibration isolation is on
   (:mod:`onnxprune.calibration.isolation`, rule 3) the reference session and every
   wave's session (same tapped tensors, weights before refitting) first run ONE batch
   in a child, so a native crash is a clean error naming least-squares recovery. A
   crash that only a later batch triggers is not covered.
"""

from __future__ import annotations

__all__ = ["LsqSettings", "conv_patches", "refit"]

import dataclasses
import logging
import math

import numpy as np
import onnx
import onnx_ir as ir

from onnxprune.calibration.isolation import preflight
from onnxprune.calibration.tap import Tap, first_batch
from onnxprune.data import DataSource
from onnxprune.graph import runtime
from onnxprune.recovery.consumers import Consumer
from onnxprune.recovery.edit import (
    can_write_bias,
    current_bias,
    current_weight,
    fit_target,
    write_bias,
    write_weight,
)
from onnxprune.rewrite.context import RewriteContext

logger = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class LsqSettings:
    ridge: float = 1e-3
    max_rows: int = 4096
    max_features: int = 8192
    seed: int = 0


# -- convolution patches --------------------------------------------------------------
def _conv_pads(node: ir.Node, spatial: tuple[int, ...], kernel: tuple[int, ...],
               strides: tuple[int, ...], dilations: tuple[int, ...]) -> list[tuple[int, int]]:
    auto = node.attributes.get("auto_pad")
    mode = auto.value if auto is not None else "NOTSET"
    mode = mode.decode() if isinstance(mode, bytes) else mode
    n = len(spatial)
    if mode in ("SAME_UPPER", "SAME_LOWER"):
        pads = []
        for size, k, s, d in zip(spatial, kernel, strides, dilations):
            total = max((math.ceil(size / s) - 1) * s + (k - 1) * d + 1 - size, 0)
            small = total // 2
            pads.append((small, total - small) if mode == "SAME_UPPER" else (total - small, small))
        return pads
    if mode == "VALID":
        return [(0, 0)] * n
    attr = node.attributes.get("pads")
    values = list(attr.value) if attr is not None else [0] * (2 * n)
    return list(zip(values[:n], values[n:]))


def _ints(node: ir.Node, name: str, n: int) -> tuple[int, ...]:
    attr = node.attributes.get(name)
    return tuple(int(v) for v in attr.value) if attr is not None else (1,) * n


def conv_patches(node: ir.Node, x: np.ndarray, kernel: tuple[int, ...], rows: np.ndarray | None,
                 ) -> tuple[np.ndarray, tuple[int, ...]]:
    """Patches ``[P, C * prod(kernel)]`` of ``x`` for output positions ``rows`` (flat indices
    over ``[N, *out_spatial]``; all when None), and the output shape ``[N, *out_spatial]``."""
    n_sp = x.ndim - 2
    strides, dilations = _ints(node, "strides", n_sp), _ints(node, "dilations", n_sp)
    pads = _conv_pads(node, x.shape[2:], kernel, strides, dilations)
    padded = np.pad(x, [(0, 0), (0, 0), *pads])
    extent = tuple((k - 1) * d + 1 for k, d in zip(kernel, dilations))
    windows = np.lib.stride_tricks.sliding_window_view(padded, extent, axis=tuple(range(2, x.ndim)))
    index = (slice(None), slice(None), *(slice(None, None, s) for s in strides),
             *(slice(None, None, d) for d in dilations))
    windows = windows[index]                     # [N, C, *out, *kernel]
    out_shape = (x.shape[0], *windows.shape[2:2 + n_sp])
    moved = np.moveaxis(windows, 1, 1 + n_sp)    # [N, *out, C, *kernel]
    flat = moved.reshape(math.prod(out_shape), -1) if rows is None else None
    if flat is None:
        coords = np.unravel_index(rows, out_shape)
        flat = moved[coords].reshape(len(rows), -1)
    return np.asarray(flat, dtype=np.float64), out_shape


# -- accumulation ---------------------------------------------------------------------
class _Fit:
    def __init__(self, consumer: Consumer, w0: np.ndarray, b0: np.ndarray,
                 settings: LsqSettings) -> None:
        self.consumer, self.settings = consumer, settings
        self.w0 = w0           # conv [O_k, C_k, k...]; else [K_k, N_k]
        self.b0 = b0
        self.kernel = tuple(w0.shape[2:]) if consumer.kind == "conv" else ()
        features = w0.shape[1] * math.prod(self.kernel) if consumer.kind == "conv" \
            else w0.shape[0]
        self.bias_only = features > settings.max_features
        if self.bias_only:
            logger.info("%s: %d inputs per output is above %d; refitting its bias only",
                        consumer.name, features, settings.max_features)
        self.with_bias = can_write_bias(consumer)
        dim = (0 if self.bias_only else features) + 1
        n_out = len(b0)
        self.ztz = np.zeros((dim, dim))
        self.ztt = np.zeros((dim, n_out))
        self.rows = 0

    def w0_matrix(self) -> np.ndarray:
        """Current weights as [features, outputs]."""
        if self.consumer.kind == "conv":
            return self.w0.reshape(self.w0.shape[0], -1).T
        return self.w0

    def add(self, z: np.ndarray, t: np.ndarray) -> None:
        if self.bias_only:
            t = t - z @ self.w0_matrix()
            z = np.zeros((len(z), 0))
        z = np.concatenate([z, np.ones((len(z), 1))], axis=1)
        self.ztz += z.T @ z
        self.ztt += z.T @ t
        self.rows += len(z)

    def solve(self) -> tuple[np.ndarray | None, np.ndarray]:
        dim = self.ztz.shape[0]
        if self.bias_only:
            return None, self.ztt[0] / max(self.ztz[0, 0], 1.0)
        features = dim - 1
        diag = np.diag(self.ztz)[:features]
        lam = self.settings.ridge * max(float(diag.mean()) if features else 0.0, 1e-12)
        reg = np.full(dim, lam)
        prior = np.vstack([self.w0_matrix(), self.b0[None, :]])
        if not self.with_bias:
            reg[-1] = 1e12 * max(lam, 1.0)   # pin the (absent) bias at zero
            prior[-1] = 0.0
        a = self.ztz + np.diag(reg)
        b = self.ztt + reg[:, None] * prior
        try:
            solution = np.linalg.solve(a, b)
        except np.linalg.LinAlgError:
            solution = np.linalg.lstsq(a, b, rcond=None)[0]
        weights, bias = solution[:-1], solution[-1]
        if self.consumer.kind == "conv":
            weights = weights.T.reshape(self.w0.shape)
        return weights, bias


def _pairs(fit: _Fit, target: np.ndarray, z_in: np.ndarray, rng,
           ) -> tuple[np.ndarray, np.ndarray]:
    consumer = fit.consumer
    target = np.asarray(target, dtype=np.float64)
    if consumer.kind == "conv":
        t = np.moveaxis(target, 1, -1)[..., consumer.out_keep]      # [N, *out, O_k]
        out_shape = t.shape[:-1]
        total = math.prod(out_shape)
        rows = None if total <= fit.settings.max_rows else \
            np.sort(rng.choice(total, fit.settings.max_rows, replace=False))
        z, _ = conv_patches(consumer.node, np.asarray(z_in, np.float64), fit.kernel, rows)
        t = t.reshape(total, -1)
        return z, (t if rows is None else t[rows])
    t = target.reshape(-1, target.shape[-1])[:, consumer.out_keep]
    z = np.asarray(z_in, dtype=np.float64).reshape(-1, z_in.shape[-1])
    if len(z) > fit.settings.max_rows:
        rows = rng.choice(len(z), fit.settings.max_rows, replace=False)
        z, t = z[rows], t[rows]
    return z, t


# -- waves ----------------------------------------------------------------------------
def waves(model: ir.Model, consumers: list[Consumer]) -> list[list[Consumer]]:
    """Consumers grouped so each wave depends only on earlier ones (rule 3)."""
    by_node = {id(c.node): c for c in consumers}
    level: dict[ir.Value, int] = {}
    grouped: dict[int, list[Consumer]] = {}
    for node in model.graph:
        upstream = max((level.get(v, -1) for v in node.inputs if v is not None), default=-1)
        own = upstream
        if id(node) in by_node:
            own = upstream + 1
            grouped.setdefault(own, []).append(by_node[id(node)])
        for out in node.outputs:
            level[out] = own
    return [grouped[k] for k in sorted(grouped)]


def refit(analysis, removed_units: np.ndarray, consumers: list[Consumer],
          original: onnx.ModelProto, data: DataSource, batch_size: int,
          settings: LsqSettings | None = None) -> int:
    """Refit ``consumers`` of the pruned ``analysis.model`` in place; return how many."""
    settings = settings or LsqSettings()
    rng = np.random.default_rng(settings.seed)
    ctx = RewriteContext(analysis, removed_units)
    fitted = 0
    targets_of = {id(c): fit_target(c).name for c in consumers}
    tapped = list(dict.fromkeys(targets_of.values()))
    grouped = waves(analysis.model, consumers)
    pruned_proto = runtime.to_runtime_proto(analysis.model)
    preflight(first_batch, original, tapped, data, batch_size, None,
              tuple((pruned_proto, [c.data.name for c in wave]) for wave in grouped),
              what="least-squares recovery (calibration pre-flight)")
    reference = Tap(original, tapped)
    for wave in grouped:
        fits = []
        for consumer in wave:
            w0 = current_weight(consumer)
            n_out = w0.shape[0] if consumer.kind == "conv" else w0.shape[1]
            fits.append(_Fit(consumer, w0, current_bias(consumer, n_out), settings))
        pruned = Tap(runtime.to_runtime_proto(analysis.model), [c.data.name for c in wave])
        for feeds in data.batches(batch_size):
            targets = reference.run(feeds)
            inputs = pruned.run(feeds)
            for fit in fits:
                z, t = _pairs(fit, targets[targets_of[id(fit.consumer)]],
                              inputs[fit.consumer.data.name], rng)
                fit.add(z, t)
        for fit in fits:
            weights, bias = fit.solve()
            if weights is not None:
                write_weight(ctx, fit.consumer, weights)
            if fit.with_bias:
                write_bias(ctx, fit.consumer, bias)
            fitted += 1
    return fitted
