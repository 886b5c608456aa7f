"""Data-free pruning that respects constants: BN-folded filters with large biases."""

from __future__ import annotations

import json

import numpy as np
import onnx
from click.testing import CliRunner

from onnxprune import compress
from onnxprune.calibration.fidelity import fidelity
from onnxprune.cli import main
from onnxprune.data import DataSource, model_input_specs
from onnxprune.graph.io import model_from_proto
from tests.builders import GraphBuilder

WIDTH = 32
WEAK = 10


def _fold(b: GraphBuilder, x: str, c_in: int, c_out: int, inputs: np.ndarray, name: str,
          weak: np.ndarray) -> tuple[str, np.ndarray]:
    """A 3x3 Conv followed by BN, folded the way exporters do (W*g/s, (b-m)*g/s + beta),
    with the BN statistics of the conv's real output on ``inputs``. ``weak`` channels
    have a small gamma and a large beta: low-L1 filters that emit a large constant."""
    rng = b.rng
    w = rng.standard_normal((c_out, c_in, 3, 3)).astype(np.float32) * 0.5
    out = _conv(inputs, w)
    mean, std = out.mean(axis=(0, 2, 3)), out.std(axis=(0, 2, 3)) + 1e-5
    gamma = np.where(weak, 0.03, rng.uniform(0.8, 1.2, c_out))
    beta = np.where(weak, rng.uniform(2.0, 4.0, c_out), rng.uniform(-0.2, 0.2, c_out))
    scale = gamma / std
    folded_w = (w * scale[:, None, None, None]).astype(np.float32)
    folded_b = (beta - mean * scale).astype(np.float32)
    y = b.op("Relu", [b.op("Conv", [x, b.init(folded_w), b.init(folded_b)], name=name,
                           pads=[1] * 4)])
    return y, np.maximum(_conv(inputs, folded_w) + folded_b[None, :, None, None], 0)


def _conv(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    padded = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    n, _, h, wd = x.shape
    out = np.zeros((n, w.shape[0], h, wd))
    for i in range(3):
        for j in range(3):
            out += np.einsum("nchw,oc->nohw", padded[:, :, i:i + h, j:j + wd], w[:, :, i, j])
    return out


def bn_folded_cnn(seed: int = 0) -> onnx.ModelProto:
    """x[N,3,8,8] -> 2 BN-folded conv+relu (32 channels, 10 weak each) -> GAP -> fc -> Softmax."""
    b = GraphBuilder(seed=seed)
    x = b.input(["N", 3, 8, 8], name="images")
    sample = b.rng.standard_normal((64, 3, 8, 8))
    weak = np.zeros(WIDTH, bool)
    weak[b.rng.choice(WIDTH, WEAK, replace=False)] = True
    h, act = _fold(b, x, 3, WIDTH, sample, "conv1", weak)
    weak2 = np.zeros(WIDTH, bool)
    weak2[b.rng.choice(WIDTH, WEAK, replace=False)] = True
    h, _ = _fold(b, h, WIDTH, WIDTH, act, "conv2", weak2)
    h = b.op("Flatten", [b.op("GlobalAveragePool", [h])])
    logits = b.op("Gemm", [h, b.weight(10, WIDTH, scale=1.0), b.weight(10)], name="fc", transB=1)
    b.output(b.op("Softmax", [logits], axis=-1, name="probs"))
    return b.model()


def held_out(model: onnx.ModelProto, samples: int = 256, seed: int = 123) -> DataSource:
    specs = model_input_specs(model_from_proto(model))
    rng = np.random.default_rng(seed)
    arrays = {s.name: rng.standard_normal((samples, *s.shape[1:])).astype(np.float32)
              for s in specs}
    return DataSource.from_arrays(arrays, specs, origin="held-out inputs")


def test_data_free_default_keeps_agreement_where_plain_l1_collapses(tmp_path):
    path = tmp_path / "folded.onnx"
    original = bn_folded_cnn()
    onnx.save(original, path)
    plain = compress(path, 0.3, criterion="l1", recover="none", output=tmp_path / "l1.onnx",
                     report=False)
    default = compress(path, 0.3, output=tmp_path / "default.onnx", report=False)
    assert default.calibration["criterion"] == "l1"
    assert default.calibration["recover"] == "bias" and default.calibration["data_free"]
    data = held_out(original)
    l1 = fidelity(onnx.load(plain.output), original, data)["agreement"]
    ours = fidelity(onnx.load(default.output), original, data)["agreement"]
    assert abs(plain.achieved - default.achieved) < 0.05
    assert ours >= l1 + 0.20, (ours, l1)
    assert default.accuracy["measured"] is False
    assert "accuracy was not measured" in default.accuracy["message"]


def test_recover_none_means_none_without_data(tmp_path):
    path = tmp_path / "folded.onnx"
    onnx.save(bn_folded_cnn(), path)
    result = compress(path, 0.3, recover="none", write=False, report=False)
    assert result.calibration["recover"] == "none" and result.calibration["recovery"] is None


def test_summary_and_json_say_accuracy_was_not_measured(tmp_path):
    path = tmp_path / "folded.onnx"
    onnx.save(bn_folded_cnn(), path)
    runner = CliRunner()
    shown = runner.invoke(main, ["compress", str(path), "--target", "0.3", "-o",
                                 str(tmp_path / "a.onnx")])
    assert shown.exit_code == 0, shown.output
    assert "accuracy was not measured" in shown.output and "--eval-data" in shown.output
    done = runner.invoke(main, ["compress", str(path), "--target", "0.3", "-o",
                                str(tmp_path / "b.onnx"), "--json"])
    document = json.loads(done.stdout)
    assert document["accuracy"]["measured"] is False
    assert "--eval-data" in document["accuracy"]["message"]
    report = json.loads((tmp_path / "b.onnx.report.json").read_text())
    assert report["accuracy"]["measured"] is False
