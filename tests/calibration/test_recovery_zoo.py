"""Recovery on every fixture: the recovered model passes compress's checks (checker, ORT
run, output names/shapes) and computes finite outputs. lsq runs on every file, bias on
the TorchScript, helper and tf2onnx files (synthetic calibration inputs)."""

from __future__ import annotations

import numpy as np
import pytest

from onnxprune.compress import compress
from onnxprune.graph.runtime import make_session
from tests.conftest import zoo_files
from tests.oracle import feeds_for

CASES = [(p, "lsq") for p in zoo_files()] + \
    [(p, "bias") for p in zoo_files() if ".dynamo" not in p.name]


@pytest.mark.parametrize(("path", "method"), CASES,
                         ids=[f"{p.name.removesuffix('.onnx')}-{m}" for p, m in CASES])
def test_recovered_model_is_valid(tmp_path, path, method):
    result = compress(path, 0.3, output=tmp_path / "rec.onnx", recover=method,
                      criterion="activation", max_samples=8, batch_size=4)
    assert result.calibration["recover"] == method and result.calibration["synthetic"]
    report = result.calibration["recovery"]
    assert report["layers"] or report["skipped"]
    original = make_session(str(path))
    feeds = feeds_for(original, 2)
    want = original.run(None, feeds)
    got = make_session(str(tmp_path / "rec.onnx")).run(None, feeds)
    for w, g in zip(want, got):
        assert g.shape == w.shape and np.all(np.isfinite(g))
