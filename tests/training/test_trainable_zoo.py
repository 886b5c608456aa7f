"""Every fixture of the zoo trains (>= 99% of its weights), or the test names what is frozen.

Legalization and the training artifacts only (no training loop): ``trainability``. One file
per family runs by default; the other exports of each family are marked ``slow``. Third-party
exports in ``fixtures/models/thirdparty/`` are picked up when present.
"""

from __future__ import annotations

import pathlib

import numpy as np
import onnx
import pytest

from onnxprune.data import DataSource, InputSpec
from onnxprune.errors import UnsupportedModelError
from onnxprune.graph import runtime
from onnxprune.training.finetune import trainability
from tests.conftest import MODELS

# family -> (op frozen in it, why it cannot be legalized); empty: every family trains
# (LSTM/GRU, which ORT 1.19 crashes on, are unrolled by training/legal_recurrent.py)
KNOWN_FROZEN: dict[str, tuple[str, str]] = {}


def _files() -> list[pathlib.Path]:
    return sorted(MODELS.glob("*.onnx")) + sorted((MODELS / "thirdparty").glob("*.onnx"))


def _family(path: pathlib.Path) -> str:
    return path.name.split(".")[0]


def _params() -> list:
    seen, params = set(), []
    for path in _files():
        family = _family(path)
        marks = [pytest.mark.slow] if family in seen else []
        seen.add(family)
        params.append(pytest.param(path, id=path.relative_to(MODELS).as_posix(), marks=marks))
    return params


def _feeds(path: pathlib.Path, session, batch: int) -> dict[str, np.ndarray]:
    """The family's calibration data (third-party exports with dynamic image sizes), else
    random inputs with every symbolic dim = ``batch``."""
    stored = MODELS / "thirdparty" / "data" / f"{_family(path)}.npz"
    if path.parent.name == "thirdparty" and stored.exists():
        with np.load(stored) as arrays:
            return {i.name: arrays[i.name][:batch] for i in session.get_inputs()}
    return runtime.dummy_inputs(session, seed=0, dynamic_dim=batch)


def _data(path: pathlib.Path, model: onnx.ModelProto, batch: int) -> DataSource:
    session = runtime.make_session(model)
    feeds = _feeds(path, session, batch)
    specs = [InputSpec(i.name, np.asarray(feeds[i.name]).dtype,
                       tuple(d if isinstance(d, int) else None for d in i.shape))
             for i in session.get_inputs()]
    return DataSource.from_arrays(feeds, specs)


def _runs_at(path: pathlib.Path, model: onnx.ModelProto, batch: int) -> bool:
    try:
        session = runtime.make_session(model)
        session.run(None, _feeds(path, session, batch))
    except Exception:  # e.g. a detector whose constants fix the batch to 1
        return False
    return True


@pytest.mark.parametrize("path", _params())
def test_zoo_model_trains_every_layer_or_names_what_is_frozen(path):
    model = onnx.load(path)
    batch = 2 if _runs_at(path, model, 2) else 1
    known = KNOWN_FROZEN.get(_family(path))
    try:
        report = trainability(model, _data(path, model, batch), batch_size=batch, isolate=False)
    except UnsupportedModelError as exc:  # ORT's training LSTM kernel refuses even frozen
        assert known is not None and known[0] in str(exc), exc
        return
    share, frozen = report["trainable_share"], report["frozen_nodes"]
    if known is None:
        assert share["fraction"] >= 0.99, (share, frozen)
        return
    op, why = known
    assert frozen and all(label.startswith(f"{op} ") for label in frozen), (frozen, why)
    assert all(op in reason for reason in frozen.values())
