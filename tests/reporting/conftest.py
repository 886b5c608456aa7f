from __future__ import annotations

import pytest

from tests.conftest import MODELS


@pytest.fixture(scope="session")
def full_report(tmp_path_factory):
    """A real compress report with every optional key the HTML page can show."""
    from onnxprune import compress
    from onnxprune.benchmark import compare
    from onnxprune.reporting.macs import layer_macs
    from onnxprune.reporting.schema import REPORT_SCHEMA_VERSION

    source = MODELS / "resnet_basic.dynamo.onnx"
    out = tmp_path_factory.mktemp("report") / "pruned.onnx"
    report = compress(source, 0.5, metric="flops", round_to=4, output=out).to_dict()
    report["schema_version"] = REPORT_SCHEMA_VERSION
    report["versions"] = {"onnx": "1.23.0", "onnxruntime": "1.19.2", "onnxprune": "0.1.0"}
    report["benchmark"] = compare(source, out, providers="cpu,cuda", threads=[1], runs=3,
                                  warmup=1, memory=False)
    report["layer_macs"] = layer_macs(source, out)
    report["steps"] = [{"step": i, "achieved": 0.1 * i, "agreement": 1 - 0.01 * i * i,
                        "note": "text is tabled, not plotted"} for i in range(1, 5)]
    report["sensitivity"] = {"curves": {"g0": {"x": [0, 0.5], "y": [1.0, 0.7]},
                                        "g1": [[0, 1.0], [0.5, 0.9]]}, "y_label": "agreement"}
    return report
