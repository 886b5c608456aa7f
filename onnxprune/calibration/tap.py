"""Run a model on a :class:`DataSource` and read intermediate tensors.

Rule: the tapped tensors are added as extra graph outputs of a *copy* of the model
(the caller's model is never changed); batches are streamed, so only one batch of
outputs is in memory at a time. ``first_batch`` is the pre-flight of
:func:`onnxprune.calibration.isolation.preflight`: the same sessions run on the first
batch only, in a child process.
"""

from __future__ import annotations

__all__ = ["Tap", "first_batch", "quiet_session", "tapped_session"]

import logging
from collections.abc import Iterator

import numpy as np
import onnx

from onnxprune.data import DataSource
from onnxprune.graph import runtime

logger = logging.getLogger(__name__)


def quiet_session(model: onnx.ModelProto):
    """An ORT session whose idle threads do not spin: calibration interleaves runs with
    numpy work, and spinning runtime threads would starve it."""
    ort = runtime.import_ort()
    options = runtime.session_options(ort)  # project log settings
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.add_session_config_entry("session.inter_op.allow_spinning", "0")
    return ort.InferenceSession(runtime.to_runtime_proto(model).SerializeToString(), options,
                                providers=["CPUExecutionProvider"])


def tapped_session(model: onnx.ModelProto, names: list[str]):
    """An ORT session over a copy of ``model`` whose outputs also include ``names``."""
    proto = onnx.ModelProto()
    proto.CopyFrom(model)
    known = {o.name for o in proto.graph.output}
    for name in names:
        if name not in known:
            proto.graph.output.append(onnx.ValueInfoProto(name=name))
            known.add(name)
    return quiet_session(proto)


class Tap:
    """Outputs of the model plus tapped tensors, batch by batch."""

    def __init__(self, model: onnx.ModelProto, names: list[str]) -> None:
        self.names = list(names)
        self.session = tapped_session(model, self.names)
        self.outputs = [o.name for o in model.graph.output]

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        wanted = list(dict.fromkeys(self.outputs + self.names))
        return dict(zip(wanted, self.session.run(wanted, feeds)))

    def stream(self, data: DataSource, batch_size: int,
               ) -> Iterator[tuple[np.ndarray | None, dict[str, np.ndarray],
                                   dict[str, np.ndarray]]]:
        """``(labels, feeds, tensors)`` per batch."""
        for labels, feeds in data.labeled_batches(batch_size):
            yield labels, feeds, self.run(feeds)


def first_batch(model: onnx.ModelProto, names: list[str], data: DataSource, batch_size: int,
                extra_feeds: dict[str, np.ndarray] | None = None,
                more: tuple[tuple[onnx.ModelProto, list[str]], ...] = ()) -> int:
    """Build a :class:`Tap` over ``model`` (tapping ``names``) and one per ``(model, names)``
    of ``more``, run each on the first batch of ``data`` (``extra_feeds`` added to the
    feeds), and return how many runs were made (0 without data). One session lives at a
    time, so many sessions over a large model do not multiply its memory."""
    feeds = next((f for _, f in data.labeled_batches(batch_size)), None)
    if feeds is None:
        return 0
    runs = 0
    for tapped_model, tapped in ((model, names), *more):
        Tap(tapped_model, tapped).run({**feeds, **(extra_feeds or {})})
        runs += 1
    return runs
