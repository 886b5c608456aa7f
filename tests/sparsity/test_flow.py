"""compress in modes unstructured and n:m: exact zeros, N:M patterns, gzip sizes,
progressive fine-tuning through onnxprune.training.finetune (a fake stands in here)."""

from __future__ import annotations

import dataclasses
import itertools
import json
import pathlib
import sys
import types

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from onnxprune.compress import compress
from onnxprune.errors import RuntimeMissingError, UsageError
from onnxprune.planning.schedule import cubic_schedule
from onnxprune.reporting.schema import validate_report
from tests.builders import GraphBuilder

ROOT = pathlib.Path(__file__).resolve().parents[2]
DIGITS = ROOT / "fixtures" / "models" / "digits_cnn.ts.onnx"
TRAIN = ROOT / "fixtures" / "data" / "digits_train.npz"
TEST = ROOT / "fixtures" / "data" / "digits_test.npz"
# weight name -> input axis in the digits CNN (3 Conv, 2 Gemm with transB=1)
DIGITS_WEIGHTS = {"onnx::Conv_42": 1, "onnx::Conv_45": 1, "onnx::Conv_48": 1,
                  "head.1.weight": 1, "head.3.weight": 1}


def _weights(path) -> dict[str, np.ndarray]:
    model = onnx.load(str(path))
    return {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}


def test_unstructured_stores_exact_zeros_of_the_smallest_weights(tmp_path):
    out = tmp_path / "sparse.onnx"
    result = compress(DIGITS, 0.9, output=out, mode="unstructured")
    before, after = _weights(DIGITS), _weights(out)
    total = sum(before[n].size for n in DIGITS_WEIGHTS)
    zeros = sum(int((after[n] == 0).sum()) for n in DIGITS_WEIGHTS)
    assert zeros == round(0.9 * total) and result.achieved == pytest.approx(0.9, abs=1e-5)
    for name, array in before.items():
        kept = after[name] != 0
        assert (after[name][kept] == array[kept]).all()  # the rest is untouched
        if name not in DIGITS_WEIGHTS:
            assert (after[name] == array).all()  # biases are never zeroed
    dropped = np.concatenate([np.abs(before[n][after[n] == 0]) for n in DIGITS_WEIGHTS])
    kept = np.concatenate([np.abs(before[n][after[n] != 0]) for n in DIGITS_WEIGHTS])
    assert dropped.max() <= kept.min()  # global magnitude threshold
    sparsity = result.sparsity
    assert sparsity["gzip_after"] < 0.25 * sparsity["gzip_before"]
    assert [r["weight"] for r in sparsity["layers"]] == list(DIGITS_WEIGHTS)
    assert sum(r["zeros"] for r in sparsity["layers"]) == zeros
    assert result.params_before - result.params_after == zeros
    assert result.macs_after == result.macs_before  # dense kernels: honest MACs
    report = json.loads((tmp_path / "sparse.onnx.report.json").read_text())
    validate_report(report)
    assert report["sparsity"]["mode"] == "unstructured"
    assert report["evaluation"]["models"][0]["model"] == "original"


def test_uniform_scope_gives_every_layer_the_target(tmp_path):
    result = compress(DIGITS, 0.5, output=tmp_path / "u.onnx", mode="unstructured",
                      scope="uniform", report=False)
    for row in result.sparsity["layers"]:
        assert row["sparsity"] == pytest.approx(0.5, abs=1 / row["weights"])


def _groups(array: np.ndarray, axis: int, m: int) -> np.ndarray:
    return np.moveaxis(array, axis, -1).reshape(-1, m)


def test_2_4_every_group_of_4_input_weights_has_two_zeros(tmp_path):
    out = tmp_path / "nm.onnx"
    result = compress(DIGITS, output=out, mode="n:m", nm="2:4")
    after = _weights(out)
    checked = 0
    for name, axis in DIGITS_WEIGHTS.items():
        if after[name].shape[axis] % 4:
            assert name in result.sparsity["skipped"]  # the 1-channel input conv
            continue
        groups = _groups(after[name], axis, 4)
        assert ((groups == 0).sum(axis=1) >= 2).all(), name
        checked += groups.shape[0]
    assert checked > 10000
    assert any("onnx::Conv_42 left dense" in n for n in result.notes)
    assert result.sparsity["target"] == 0.5


def test_nm_on_a_matmul_uses_its_k_axis(tmp_path):
    b = GraphBuilder()
    x = b.input(["N", 8])
    h = b.op("Relu", [b.op("MatMul", [x, b.weight(8, 12)], name="mm1")])
    b.output(b.op("MatMul", [h, b.weight(12, 4)], name="mm2"))
    path = tmp_path / "mlp.onnx"
    onnx.save(b.model(), path)
    compress(path, output=tmp_path / "mlp.nm.onnx", mode="n:m", nm="1:4", report=False)
    weights = [numpy_helper.to_array(t) for t in onnx.load(tmp_path / "mlp.nm.onnx")
               .graph.initializer]
    for array in weights:
        assert ((_groups(array, 0, 4) != 0).sum(axis=1) <= 1).all()


# -- progressive fine-tuning through onnxprune.training.finetune ----------------------------
@dataclasses.dataclass
class _Result:
    model: onnx.ModelProto
    history: list


def _install_fake_finetune(monkeypatch, calls: list, reapply: bool = True) -> None:
    """A stand-in for onnxprune.training.finetune with the agreed signature: every
    initializer takes a 'step' (noise), then the masks are re-applied, as promised."""

    def finetune(model, data, *, teacher=None, loss="distill", epochs=1.0, lr=1e-3,
                 optimizer="adamw", batch_size=32, seed=0, frozen=(), masks=None,
                 progress=None, **settings):
        calls.append({"model": model, "data": data, "teacher": teacher, "epochs": epochs,
                      "lr": lr, "batch_size": batch_size, "masks": masks})
        tuned = onnx.ModelProto()
        tuned.CopyFrom(model)
        rng = np.random.default_rng(len(calls))
        for tensor in tuned.graph.initializer:
            array = numpy_helper.to_array(tensor)
            array = array + rng.normal(0, 0.01, array.shape).astype(array.dtype)
            if reapply and masks and tensor.name in masks:
                array = array * masks[tensor.name]
            tensor.CopyFrom(numpy_helper.from_array(array, tensor.name))
        return _Result(tuned, [{"loss": 0.0}])

    module = types.ModuleType("onnxprune.training")
    module.finetune = finetune
    monkeypatch.setitem(sys.modules, "onnxprune.training", module)


def test_progressive_unstructured_passes_growing_masks_to_finetune(tmp_path, monkeypatch):
    calls: list = []
    _install_fake_finetune(monkeypatch, calls)
    out = tmp_path / "prog.onnx"
    result = compress(DIGITS, 0.8, output=out, mode="unstructured", steps=3,
                      finetune_epochs=0.5, lr=0.01, data=str(TRAIN), max_samples=64,
                      eval_data=str(TEST), accept_drop=True)  # fake fine-tuning: no accuracy
    assert len(calls) == 3
    original = onnx.load(str(DIGITS))
    for call, level in zip(calls, cubic_schedule(0.8, 3)):
        masks = call["masks"]
        assert set(masks) == set(DIGITS_WEIGHTS)
        assert call["teacher"].graph.initializer[0] == original.graph.initializer[0]
        assert (call["epochs"], call["lr"], call["data"].num_samples) == (0.5, 0.01, 64)
        zeroed = sum(int((m == 0).sum()) for m in masks.values())
        total = sum(m.size for m in masks.values())
        assert zeroed == round(level * total)
        for name, mask in masks.items():
            weight = next(t for t in call["model"].graph.initializer if t.name == name)
            assert mask.shape == tuple(weight.dims) and set(np.unique(mask)) <= {0.0, 1.0}
            assert (numpy_helper.to_array(weight)[mask == 0] == 0).all()  # zeroed before
    for earlier, later in itertools.pairwise(calls):  # masks only grow
        for name in DIGITS_WEIGHTS:
            assert not ((later["masks"][name] == 1) & (earlier["masks"][name] == 0)).any()
    after = _weights(out)
    final = calls[-1]["masks"]
    for name in DIGITS_WEIGHTS:
        assert (after[name][final[name] == 0] == 0).all()
    # the written model is the fine-tuned one (the fake moved every kept weight)
    assert not np.array_equal(after["head.1.bias"], _weights(DIGITS)["head.1.bias"])
    assert [row["step"] for row in result.steps] == [1, 2, 3]
    assert all(row["finetune_violations"] == 0 for row in result.steps)
    assert "accuracy" in result.steps[-1] and result.achieved == pytest.approx(0.8, abs=1e-4)


def test_masks_broken_by_finetuning_are_zeroed_again(tmp_path, monkeypatch):
    calls: list = []
    _install_fake_finetune(monkeypatch, calls, reapply=False)
    out = tmp_path / "broken.onnx"
    result = compress(DIGITS, output=out, mode="n:m", steps=2, finetune_epochs=1,
                      data=str(TRAIN), max_samples=32, report=False)
    assert result.steps[0]["finetune_violations"] > 0
    assert any("were zeroed again" in n for n in result.notes)
    after = _weights(out)
    for name in ("onnx::Conv_45", "head.1.weight"):
        assert ((_groups(after[name], 1, 4) == 0).sum(axis=1) >= 2).all()


def test_finetuning_without_onnxprune_training_says_what_is_missing(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxprune.training", None)
    with pytest.raises(RuntimeMissingError, match=r"onnxprune\.training"):
        compress(DIGITS, 0.5, output=tmp_path / "x.onnx", mode="unstructured",
                 finetune_epochs=1, data=str(TRAIN), max_samples=16)
    assert not (tmp_path / "x.onnx").exists()


@pytest.mark.parametrize("options,message", [
    ({"mode": "n:m", "target": 0.5}, "does not apply to mode n:m"),
    ({"mode": "unstructured"}, "'target' is required"),
    ({"mode": "n:m", "nm": "4:4"}, "1 <= N < M"),
    ({"mode": "unstructured", "target": 0.5, "finetune_epochs": 1}, "needs training data"),
    ({"target": 0.5, "steps": 3}, "needs training data"),
])
def test_inconsistent_options_are_usage_errors(tmp_path, options, message):
    with pytest.raises(UsageError, match=message):
        compress(DIGITS, output=tmp_path / "x.onnx", **options)
