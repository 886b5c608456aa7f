"""``prune_once`` prunes once and stages only; ``finish`` is the one place that commits."""

from __future__ import annotations

import contextlib

import onnx
import pytest

from onnxprune.graph.io import StagedOutput
from onnxprune.options import build_options
from onnxprune.pipeline.context import open_run
from onnxprune.pipeline.finish import finish
from onnxprune.pipeline.inputs import open_inputs, open_model
from onnxprune.pipeline.prune import prune_once
from onnxprune.pipeline.result import Accuracy, Calibration
from tests.builders import GraphBuilder


def _cnn(path):
    b = GraphBuilder(opset=13)
    x = b.input(["N", 3, 8, 8])
    h = b.op("Relu", [b.conv(x, 3, 16, name="c1")])
    b.output(b.conv(h, 16, 4, name="c2"))
    onnx.save(b.model(), path)
    return path


def test_prune_once_stages_a_checked_candidate_and_writes_no_output(tmp_path):
    model = _cnn(tmp_path / "m.onnx")
    options = build_options({"target": 0.5, "round_to": 1, "recover": "none"})
    inputs = open_model(model)
    destination = tmp_path / "out.onnx"
    with StagedOutput(destination, source=model) as stage:
        pruned = prune_once(inputs, options, stage, target=0.25)
        candidate = pruned.candidate
        assert candidate.path == stage.path and candidate.path.is_file()
        assert not destination.exists()  # staged, never committed here
        written = onnx.load(str(candidate.path))
    assert not destination.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx"]
    assert candidate.params_after < candidate.params_before
    assert candidate.achieved == pytest.approx(0.25, abs=0.1)  # the target given, not 0.5
    assert candidate.verification["max_rel_diff"] < 1e-4  # the masked-equivalence oracle
    row = next(r for r in candidate.layers if r["layer"] == "c1")
    assert row["before"] == 16 and row["after"] < 16
    weight = next(n for n in written.graph.node if n.name == "c1").input[1]
    dims = next(list(t.dims) for t in written.graph.initializer if t.name == weight)
    assert dims[0] == row["after"]  # the staged file is the pruned model the rows describe
    assert candidate.section(Calibration).calibration["criterion"] == "l1"
    assert pruned.calibration.target == 0.25


def test_finish_commits_once_with_every_section(tmp_path):
    model = _cnn(tmp_path / "m.onnx")
    options = build_options({"target": 0.5, "round_to": 1})
    with contextlib.ExitStack() as stack:
        run = open_run(stack, model, tmp_path / "out.onnx", write=True, report=False,
                       progress=None, notes=["run note"], auto_steps=False)
        inputs = open_inputs(model, options)
        pruned = prune_once(inputs, options, run.staged)
        candidate = pruned.candidate.with_section(Accuracy({"measured": False}))
        assert not (tmp_path / "out.onnx").exists()
        result = finish(inputs, candidate, options, run)
    assert result.output == str(tmp_path / "out.onnx") and (tmp_path / "out.onnx").is_file()
    assert result.notes[0] == "run note"
    assert result.accuracy == {"measured": False} and result.calibration["criterion"] == "l1"
    assert result.size_after == (tmp_path / "out.onnx").stat().st_size
    assert not (tmp_path / "out.onnx.report.json").exists()  # report=False
