"""Every fixture of the zoo, both exporters: compress to 0.5 and pass the oracle."""

from __future__ import annotations

import numpy as np
import pytest

from onnxprune.analysis import analyze
from onnxprune.graph import load_model
from tests.conftest import zoo_files
from tests.oracle import prune_and_check

ZOO = zoo_files()
IDS = [p.name.removesuffix(".onnx") for p in ZOO]


def test_zoo_is_present():
    names = {p.name.split(".")[0] for p in ZOO}
    expected = {"resnet_basic", "resnet_bottleneck", "mobilenetv2", "mobilenetv3_like",
                "efficientnet_like", "densenet_like", "vgg_bn", "resnext", "unet", "yolo_neck",
                "dcgan_generator", "convnext_like", "mlp", "constant_weights"}
    assert expected <= names
    exporters = {p.name.split(".")[1] for p in ZOO if p.name.count(".") == 2}
    assert {"ts", "dynamo"} <= exporters


@pytest.mark.parametrize("metric", ["params", "flops"])
@pytest.mark.parametrize("path", ZOO, ids=IDS)
def test_compress_half_passes_masked_oracle(path, metric):
    checked = prune_and_check(path, 0.5, metric=metric)
    assert abs(checked.plan.achieved - 0.5) <= 0.02 or checked.plan.maximum < 0.5


@pytest.mark.parametrize("path", ZOO, ids=IDS)
def test_round_to_8_keeps_multiples_of_8(path):
    try:
        checked = prune_and_check(path, 0.3, metric="params", round_to=8)
    except Exception as exc:  # unreachable is a valid, reported outcome for tiny models
        from onnxprune.errors import UnreachableTargetError
        assert isinstance(exc, UnreachableTargetError) and exc.maximum < 0.3
        return
    for group in checked.analysis.groups:
        kept = checked.plan.kept.get(group.index, group.size)
        assert kept == group.size or kept % 8 == 0, (group.name, group.size, kept)


@pytest.mark.parametrize("path", ZOO, ids=IDS)
def test_analyze_has_no_unknown_op(path):
    analysis = analyze(load_model(path).model)
    reasons = [r for g in analysis.groups for r in g.reasons]
    assert not [r for r in reasons if "no rule for op" in r]
    assert analysis.prunable_groups
    assert np.isfinite(len(analysis.groups))
