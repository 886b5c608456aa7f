"""Fidelity of a model to a reference (the original): the one comparison every flow uses.

Sensitivity damage, the per-step table of progressive runs, ``--max-drop``, the
evaluation table of sparsity/INT8 runs and the task metric of every compress result
read these metrics. Each graph output is compared through its head
(:func:`onnxprune.graph.outputs.output_heads`), on the tensor the head names:

1. ``softmax`` / ``log_softmax`` heads, and ``plain`` outputs shaped ``[N, K]`` (K > 1,
   a classifier's logits; kind ``scores``): over the distribution rows
   (:func:`softmax_rows`) of the *logits*, ``kl`` = KL(softmax(reference) ||
   softmax(model)), ``agreement`` = fraction of rows with the same top class, and with
   integer labels (one per row) ``accuracy`` and ``reference_accuracy``.
2. ``sigmoid`` heads: on the logits, ``kl`` = mean Bernoulli KL of the gates,
   ``agreement`` = fraction of gates on the same side of 0.5.
3. Every head also gets ``cosine`` (mean over samples of 1 - cos) and ``rel_mse`` on its
   tensor **standardised per output channel**: each channel (axis 1; the last axis of
   ``[N, K]``) divided by the reference's spread around zero over the data (its root mean
   square), so a channel in pixels and one in [0, 1] count alike. Not centred: a channel
   that barely varies over the data (a classifier's logits on inputs that look alike)
   would have its noise amplified. Softmax/LogSoftmax logits are first centred over their
   distribution rows (a softmax ignores a constant added to a row, and distillation
   leaves it free), and compared per row.
4. *Parts*: consecutive channels of one output whose reference ranges differ (values in
   [0, 1] next to unbounded ones, or spreads more than 10x apart) are parts (a detector's
   box rows and class-score rows); each part gets its own ``cosine``/``rel_mse`` (and
   ``agreement`` of thresholded scores for a [0, 1] part).
5. The summary keys: ``kl``/``agreement``/``accuracy``/``reference_accuracy`` of the first
   head of rule 1 (else rule 2); ``cosine``/``rel_mse`` are the **worst** over every
   output and part, so one collapsed part shows in the summary. ``outputs`` lists every
   head with its own metrics and parts; ``samples`` how many samples were compared.
6. The outputs of both models are held in memory (the channel statistics of rule 3 need
   all of them): at most :data:`MAX_BYTES` of one model's outputs, so the first batches up
   to that size are compared (a log line says so).
7. :func:`max_rel_diff` (not part of the summary; the evaluation table of sparsity/INT8
   runs adds it): the largest absolute difference of the first head's output from the
   reference's, divided by the reference's largest magnitude.
8. :func:`prepare` computes the reference's side of rules 3-4 once (channel statistics,
   standardised tensor, parts); ``compare(..., prepared=...)`` then gives exactly the
   same metrics for every model compared with that reference (sensitivity compares
   dozens of configurations with one baseline batch).
"""

from __future__ import annotations

__all__ = ["MAX_BYTES", "MAX_PARTS", "Prepared", "compare", "fidelity", "fidelity_heads",
           "max_rel_diff", "outputs_on", "prepare"]

import dataclasses
import logging

import numpy as np
import onnx

from onnxprune.data import DataSource
from onnxprune.graph import runtime
from onnxprune.graph.outputs import OutputHead, output_heads, softmax_rows, with_logit_outputs

logger = logging.getLogger(__name__)

MAX_PARTS = 8
MAX_BYTES = 2**30
_SPREAD_RATIO = 10.0


def fidelity_heads(reference: onnx.ModelProto,
                   model: onnx.ModelProto | None = None) -> list[OutputHead]:
    """The heads of ``reference`` to compare; a head whose activation ``model`` does not
    share (a different logits tensor) is compared on its output instead."""
    heads = [h for h in output_heads(reference) if h.kind != "ignored"]
    if model is None:
        return heads
    theirs = {h.output: h for h in output_heads(model)}
    same = []
    for head in heads:
        other = theirs.get(head.output)
        if other is None or other.logits != head.logits:
            head = OutputHead(head.output, head.position, "plain", head.output,
                              reason="the compared model has no matching activation")
        same.append(head)
    return same


def outputs_on(model: onnx.ModelProto, heads: list[OutputHead], data: DataSource,
               batch_size: int) -> tuple[dict[str, np.ndarray], np.ndarray | None]:
    """Every graph output and every head's logits over all of ``data``, and the labels."""
    proto = with_logit_outputs(model, heads)
    session = runtime.make_session(proto)
    names = [o.name for o in session.get_outputs()]
    chunks: dict[str, list[np.ndarray]] = {n: [] for n in names}
    labels, held, rows = [], 0, 0
    for batch_labels, feeds in data.labeled_batches(data.fixed_batch or batch_size):
        if held >= MAX_BYTES:
            logger.info("fidelity: outputs of the first %d of %d samples compared (rule 6)",
                        rows, data.num_samples)
            break
        for name, value in zip(names, session.run(names, feeds)):
            chunks[name].append(np.asarray(value))
            held += chunks[name][-1].nbytes
        rows += len(next(iter(feeds.values())))
        if batch_labels is not None:
            labels.append(np.asarray(batch_labels))
    arrays = {n: np.concatenate(v) for n, v in chunks.items() if v}
    return arrays, (np.concatenate(labels) if labels else None)


def _channel_first(array: np.ndarray) -> np.ndarray:
    """``[N, C, rest]`` view (rule 3: the channel axis is 1)."""
    array = np.asarray(array, np.float64)
    if array.ndim < 2:
        return array.reshape(len(array), 1, 1)
    return array.reshape(array.shape[0], array.shape[1], -1)


def _stats(ref: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rule 3: per-channel centre (zero) and spread (root mean square) of
    ``[N, C, rest]``; a spread is at least 1e-4 of the whole tensor's."""
    overall = float(np.sqrt(np.mean(ref ** 2))) if ref.size else 0.0
    spread = np.sqrt(np.mean(ref ** 2, axis=(0, 2))) if ref.size else np.zeros(ref.shape[1])
    return np.zeros(ref.shape[1]), np.maximum(spread, max(overall * 1e-4, 1e-12))


def _standardised(array: np.ndarray, mean: np.ndarray, spread: np.ndarray) -> np.ndarray:
    return (array - mean[None, :, None]) / spread[None, :, None]


def _similarity(out: np.ndarray, ref: np.ndarray, mean: np.ndarray,
                spread: np.ndarray, z_ref: np.ndarray | None = None) -> dict[str, float]:
    """Rule 3 on ``[N, C, rest]`` arrays with the reference's channel statistics
    (``z_ref``: the standardised reference, when :func:`prepare` computed it)."""
    z_out = _standardised(out, mean, spread).reshape(len(out), -1)
    z_ref = (_standardised(ref, mean, spread) if z_ref is None else z_ref).reshape(len(ref), -1)
    norms = np.linalg.norm(z_out, axis=1) * np.linalg.norm(z_ref, axis=1)
    dots = (z_out * z_ref).sum(axis=1)
    same = np.all(np.isclose(z_out, z_ref, atol=1e-9), axis=1)
    cos = np.where(same, 1.0, dots / np.maximum(norms, 1e-30))
    return {"cosine": float(np.mean(1.0 - cos)),
            "rel_mse": float(np.mean((z_out - z_ref) ** 2))}


def _parts(ref: np.ndarray) -> list[tuple[int, int, bool]]:
    """Rule 4: ``(first, end, bounded)`` channel ranges, or [] for a one-part output."""
    low, high = ref.min(axis=(0, 2)), ref.max(axis=(0, 2))
    spread = np.maximum(ref.std(axis=(0, 2)), max(float(ref.std()) * 1e-4, 1e-12))
    bounded = (low >= 0.0) & (high <= 1.0)
    parts, start = [], 0
    for c in range(1, ref.shape[1]):
        ratio = max(spread[c], spread[c - 1]) / min(spread[c], spread[c - 1])
        if bounded[c] != bounded[c - 1] or ratio > _SPREAD_RATIO:
            parts.append((start, c, bool(bounded[start])))
            start = c
    parts.append((start, ref.shape[1], bool(bounded[start])))
    return parts if 1 < len(parts) <= MAX_PARTS else []


def _classes(out: np.ndarray, ref: np.ndarray, head: OutputHead,
             labels: np.ndarray | None) -> dict[str, float]:
    """Rule 1 on the logits."""
    y = softmax_rows(np.asarray(out, np.float64), head)
    r = softmax_rows(np.asarray(ref, np.float64), head)
    log_p, log_q = _log_softmax(r), _log_softmax(y)
    row = {"kl": float((np.exp(log_p) * (log_p - log_q)).sum(axis=1).mean()),
           "agreement": float((y.argmax(1) == r.argmax(1)).mean())}
    ids = None if labels is None else np.asarray(labels).reshape(-1)
    if ids is not None and len(ids) == len(y) and np.issubdtype(ids.dtype, np.integer):
        row["accuracy"] = float((y.argmax(1) == ids).mean())
        row["reference_accuracy"] = float((r.argmax(1) == ids).mean())
    return row


def _centred_rows(array: np.ndarray, head: OutputHead) -> np.ndarray:
    rows = softmax_rows(np.asarray(array, np.float64), head)
    return (rows - rows.mean(axis=1, keepdims=True))[:, :, None]


def _gates(out: np.ndarray, ref: np.ndarray) -> dict[str, float]:
    """Rule 2 on the logits."""
    y, r = np.asarray(out, np.float64).ravel(), np.asarray(ref, np.float64).ravel()
    p, q = 1.0 / (1.0 + np.exp(-r)), 1.0 / (1.0 + np.exp(-y))
    eps = 1e-12
    kl = p * (np.log(p + eps) - np.log(q + eps)) + \
        (1 - p) * (np.log(1 - p + eps) - np.log(1 - q + eps))
    return {"kl": float(kl.mean()), "agreement": float(((y > 0) == (r > 0)).mean())}


def _log_softmax(x: np.ndarray) -> np.ndarray:
    shifted = x - x.max(axis=1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))


def _kind(head: OutputHead, ref: np.ndarray) -> str:
    if head.kind == "plain" and ref.ndim == 2 and ref.shape[1] > 1:
        return "scores"
    return head.kind


@dataclasses.dataclass
class Prepared:
    """The reference's side of rules 3-4 for one head (rule 8)."""

    kind: str
    ref: np.ndarray  # [N, C, rest] float64 (softmax heads: centred rows)
    mean: np.ndarray
    spread: np.ndarray
    z: np.ndarray  # ref standardised by mean/spread
    parts: list[tuple[int, int, bool]]


def _prepare_head(head: OutputHead, ref: np.ndarray) -> Prepared:
    kind = _kind(head, ref)
    if kind in ("softmax", "log_softmax"):  # rule 3: rows centred, compared per row
        r = _centred_rows(ref, head)
    else:
        r = _channel_first(ref)
    mean, spread = _stats(r)
    parts = _parts(r) if kind not in ("softmax", "log_softmax") else []
    return Prepared(kind, r, mean, spread, _standardised(r, mean, spread), parts)


def prepare(reference: dict[str, np.ndarray], heads: list[OutputHead]) -> dict[str, Prepared]:
    """Rule 8: per head logits name, the reference's statistics."""
    return {h.logits: _prepare_head(h, reference[h.logits]) for h in heads
            if h.logits in reference}


def compare_head(head: OutputHead, out: np.ndarray, ref: np.ndarray,
                 labels: np.ndarray | None, prepared: Prepared | None = None) -> dict:
    """Rules 1-4 for one head (``out``/``ref``: the tensor the head reads)."""
    prepared = prepared or _prepare_head(head, ref)
    kind = prepared.kind
    row: dict = {"output": head.output, "kind": kind, "reads": head.logits}
    if kind in ("softmax", "log_softmax", "scores"):
        row.update(_classes(out, ref, head, labels))
    elif kind == "sigmoid":
        row.update(_gates(out, ref))
    y = _centred_rows(out, head) if kind in ("softmax", "log_softmax") else _channel_first(out)
    r, mean, spread, z = prepared.ref, prepared.mean, prepared.spread, prepared.z
    row.update(_similarity(y, r, mean, spread, z))
    parts = []
    for first, end, bounded in prepared.parts:
        part = {"channels": [first, end], "range": "[0, 1]" if bounded else "unbounded",
                **_similarity(y[:, first:end], r[:, first:end], mean[first:end],
                              spread[first:end], z[:, first:end])}
        if bounded:
            part["agreement"] = float(((y[:, first:end] > 0.5) ==
                                       (r[:, first:end] > 0.5)).mean())
        parts.append(part)
    if parts:
        row["parts"] = parts
    return row


def compare(outputs: dict[str, np.ndarray], reference: dict[str, np.ndarray],
            heads: list[OutputHead], labels: np.ndarray | None,
            prepared: dict[str, Prepared] | None = None) -> dict:
    """Rules 1-5 on arrays keyed by tensor name (:func:`outputs_on` of both models);
    ``prepared``: :func:`prepare` of ``reference`` (rule 8)."""
    prepared = prepared or {}
    rows = [compare_head(h, outputs[h.logits], reference[h.logits], labels,
                         prepared.get(h.logits))
            for h in heads if h.logits in outputs and h.logits in reference]
    summary: dict = {}
    for kinds in (("softmax", "log_softmax", "scores"), ("sigmoid",)):
        first = next((r for r in rows if r["kind"] in kinds), None)
        if first is not None:
            summary.update({k: first[k] for k in ("accuracy", "kl", "agreement",
                                                   "reference_accuracy") if k in first})
            break
    values = [(r["cosine"], r["rel_mse"]) for r in rows]
    values += [(p["cosine"], p["rel_mse"]) for r in rows for p in r.get("parts", [])]
    if values:
        summary["cosine"] = max(v[0] for v in values)
        summary["rel_mse"] = max(v[1] for v in values)
    summary = {k: round(v, 6) for k, v in summary.items()}
    summary["outputs"] = [_rounded(r) for r in rows]
    if reference:
        summary["samples"] = len(next(iter(reference.values())))
    return summary


def _rounded(row: dict) -> dict:
    done = {k: (round(v, 6) if isinstance(v, float) else v) for k, v in row.items()}
    if "parts" in row:
        done["parts"] = [_rounded(p) for p in row["parts"]]
    return done


def fidelity(model: onnx.ModelProto, reference: onnx.ModelProto, data: DataSource,
             batch_size: int = 64) -> dict:
    """Rules 1-5 of ``model`` against ``reference`` on ``data`` (one pass each)."""
    heads = fidelity_heads(reference, model)
    expected, labels = outputs_on(reference, heads, data, batch_size)
    got, _ = outputs_on(model, heads, data, batch_size)
    return compare(got, expected, heads, labels)


def max_rel_diff(outputs: dict[str, np.ndarray], reference: dict[str, np.ndarray],
                 heads: list[OutputHead]) -> float | None:
    """Rule 7 (``None`` without heads)."""
    if not heads:
        return None
    first = heads[0].output
    out, ref = np.asarray(outputs[first], np.float64), np.asarray(reference[first])
    if not ref.size:
        return 0.0
    scale = max(float(np.abs(ref).max()), 1e-12)
    return float(np.abs(out - ref).max() / scale)
