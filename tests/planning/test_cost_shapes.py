"""Costs at the run-time input shapes: symbolic H/W count at the chosen size, not 1."""

from __future__ import annotations

import pytest

from onnxprune.compress import analyze_file, compress
from tests.graph.dynamic_models import detector_like, paddle_like


@pytest.fixture
def detectors(tmp_model):
    return (tmp_model(detector_like(32), "dynamic.onnx"),
            tmp_model(detector_like(32, dims=[1, 3, 320, 320]), "static.onnx"),
            tmp_model(detector_like(32, metadata={"imgsz": "[320, 320]"}), "stated.onnx"))


def test_macs_at_given_or_stated_size_equal_the_static_model(detectors):
    dynamic, static, stated = detectors
    expected = analyze_file(static)["macs"]
    assert expected > 1e7  # a 320x320 workload, not one pixel
    given = analyze_file(dynamic, input_shape={"images": (1, 3, 320, 320)})
    assert given["macs"] == expected
    assert given["input_shapes"]["images"] == {"shape": [1, 3, 320, 320], "source": "given"}
    assert analyze_file(stated)["macs"] == expected
    probed = analyze_file(dynamic)  # 224 is the first size this detector accepts
    assert probed["macs"] == pytest.approx(expected * (224 / 320) ** 2)


def test_flops_metric_plans_on_macs_at_the_run_shapes(detectors):
    dynamic, static, _ = detectors
    options = {"target": 0.4, "metric": "flops"}
    ref = compress(static, options=options, write=False)
    got = compress(dynamic, options={**options, "input_shape": {"images": [1, 3, 320, 320]}},
                   write=False)
    assert got.macs_before == ref.macs_before and got.macs_after == ref.macs_after
    assert got.achieved == pytest.approx(1 - got.macs_after / got.macs_before, abs=1e-6)
    assert got.achieved >= 0.4
    assert got.input_shapes["images"]["source"] == "given"
    assert got.verification["input_shapes"] == {"images": [1, 3, 320, 320]}


def test_per_layer_macs_in_the_report_are_at_the_run_shapes(tmp_model, tmp_path):
    import json

    model = tmp_model(paddle_like([-1, 3, 0, "?"]))
    result = compress(model, target=0.3, output=tmp_path / "p.onnx",
                      input_shape={"x": (1, 3, 64, 64)})
    report = json.loads((tmp_path / "p.onnx.report.json").read_text())
    first = report["layer_macs"][0]  # 3x3 conv, 3 -> 8 channels, at 64x64
    assert first["before"] == 64 * 64 * 8 * 3 * 9
    assert sum(r["before"] for r in report["layer_macs"]) == result.macs_before
    assert report["input_shapes"]["x"] == {"shape": [None, 3, 64, 64], "source": "given"}


def test_third_party_detector_macs_at_its_stated_size():
    from tests.conftest import MODELS

    folder = MODELS / "thirdparty"
    stated = analyze_file(folder / "yolo_det.ts.onnx")  # ultralytics-style imgsz metadata
    assert stated["input_shapes"]["images"] == {"shape": [None, 3, 320, 320],
                                                "source": "metadata"}
    given = analyze_file(folder / "yolo_det.dynamo.onnx",
                         input_shape={"images": (1, 3, 320, 320)})
    assert given["macs"] == stated["macs"] > 5e7
