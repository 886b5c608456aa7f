"""The flow table: ``select_flow`` picks one flow per set of options, the post-steps
and CLI summaries follow from the same table; ``CompressResult`` sections."""

from __future__ import annotations

import pytest

from onnxprune.options import build_options
from onnxprune.pipeline import flows
from onnxprune.pipeline.flows import FLOWS, POST_STEPS, post_steps, select_flow, summary_parts
from onnxprune.pipeline.result import (
    SECTION_KEYS,
    Accuracy,
    CompressResult,
    Progressive,
    Quantization,
    Sparsity,
)


def _options(**values):
    return build_options({"target": 0.5, **values})


@pytest.mark.parametrize(("values", "flow"), [
    ({}, "one-shot"),
    ({"steps": 1}, "one-shot"),
    ({"steps": 3, "data": "d.npz"}, "progressive"),
    ({"steps": 3, "finetune_epochs": 0}, "progressive"),  # steps without fine-tuning
    ({"train_steps": 2, "data": "d.npz"}, "progressive"),
    ({"mode": "unstructured"}, "sparse"),
    ({"mode": "2:4", "target": None}, "sparse"),
    ({"mode": "unstructured", "steps": 3, "data": "d.npz"}, "sparse"),  # its own schedule
    ({"quantize": "int8"}, "one-shot"),
], ids=["default", "steps1", "steps3", "steps3_no_tuning", "train_steps", "unstructured",
        "nm", "sparse_steps", "int8"])
def test_select_flow_picks_one_flow(values, flow):
    assert select_flow(_options(**values)).name == flow


def test_unset_steps_with_data_is_progressive_only_with_the_training_build(monkeypatch):
    options = _options(data="d.npz")
    monkeypatch.setattr(flows, "training_available", lambda: True)
    assert select_flow(options).name == "progressive"
    monkeypatch.setattr(flows, "training_available", lambda: False)
    assert select_flow(options).name == "one-shot"


def test_flow_table_names_each_flow_once_and_ends_with_a_default():
    names = [flow.name for flow in FLOWS]
    assert names == ["sparse", "progressive", "one-shot"]
    assert FLOWS[-1].applies(_options())  # always applies: every option set has a flow
    assert [step.name for step in POST_STEPS] == ["quantize-int8", "evaluate"]
    assert [flow.name for flow in FLOWS if flow.progress] == ["progressive"]


@pytest.mark.parametrize(("values", "steps", "parts"), [
    ({}, [], ("structured",)),
    ({"steps": 2, "data": "d.npz"}, [], ("structured",)),
    ({"quantize": "int8"}, ["quantize-int8", "evaluate"], ("structured", "evaluation")),
    ({"mode": "unstructured"}, ["evaluate"], ("evaluation", "accuracy")),
    ({"mode": "unstructured", "quantize": "int8"}, ["quantize-int8", "evaluate"],
     ("evaluation", "accuracy")),
], ids=["one_shot", "progressive", "int8", "sparse", "sparse_int8"])
def test_post_steps_and_cli_summaries_follow_the_table(values, steps, parts):
    options = _options(**values)
    assert [step.name for step in post_steps(options)] == steps
    assert summary_parts(options) == parts


def _result(**sections) -> CompressResult:
    return CompressResult(input="m.onnx", output=None, options={}, achieved=0.5,
                          params_before=10, params_after=5, macs_before=100.0,
                          macs_after=50.0, size_before=40, size_after=20, layers=[],
                          groups=[], verification=None, seconds=0.1, notes=[],
                          input_shapes=None, **sections)


def test_result_sections_fill_their_report_keys_and_nothing_else():
    result = _result(sections=(Sparsity({"mode": "unstructured"}, [{"step": 1}]),
                               Accuracy({"measured": False})))
    document = result.to_dict()
    core = ["input", "output", "options", "achieved", "params_before", "params_after",
            "macs_before", "macs_after", "size_before", "size_after", "layers", "groups",
            "verification", "seconds", "notes", "version"]
    assert list(document) == [*core, *SECTION_KEYS, "input_shapes"]
    assert document["sparsity"] == {"mode": "unstructured"} and document["steps"] == [{"step": 1}]
    assert document["accuracy"] == {"measured": False}
    assert [k for k in SECTION_KEYS if document[k] is None] == [
        "calibration", "quantization", "evaluation", "budget", "flow", "latency"]
    assert result.sparsity == {"mode": "unstructured"} and result.quantization is None


def test_with_section_replaces_a_section_of_the_same_type():
    result = _result(sections=(Progressive(flow={"chosen": "progressive"}),))
    result = result.with_section(Progressive(flow={"chosen": "one-shot"}))
    result = result.with_section(Quantization({"method": "static"}))
    assert result.flow == {"chosen": "one-shot"} and len(result.sections) == 2
    assert result.to_dict()["quantization"] == {"method": "static"}
    document = result.to_dict()
    document["quantization"]["method"] = "changed"  # a copy: the result is unchanged
    assert result.quantization == {"method": "static"}
