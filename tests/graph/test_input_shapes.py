"""Run-time input shapes: dynamic dims of every spelling, the resolution order, probes."""

from __future__ import annotations

import onnx_ir as ir
import pytest

from onnxprune.errors import UnsupportedModelError, UsageError
from onnxprune.graph import input_shapes
from onnxprune.graph.input_shapes import is_dynamic, parse_input_shapes
from onnxprune.graph.shape_choice import metadata_size, resolve_input_shapes
from onnxprune.graph.shapes import dims, infer_shapes, probe_static_dims
from tests.graph.dynamic_models import detector_like, fixed_size_only, paddle_like


@pytest.mark.parametrize("dim,dynamic", [(-1, True), (0, True), (None, True), ("?", True),
                                         ("batch", True), (1, False), (224, False)])
def test_only_positive_ints_are_static(dim, dynamic):
    assert is_dynamic(dim) is dynamic


@pytest.mark.parametrize("spatial", [[0, "?"], [-1, -1], [None, None], ["h", 0]],
                         ids=["zero_and_question_mark", "minus_one", "empty", "param_and_zero"])
def test_paddle_dims_get_a_working_size_never_zero(spatial):
    model = paddle_like([-1, 3, *spatial])
    resolved = resolve_input_shapes(model)
    entry = resolved.get("x")
    assert entry.dims == (None, 3, 224, 224) and entry.source == "probed"
    assert entry.concrete(2) == (2, 3, 224, 224)


def test_nonpositive_dims_become_dynamic_for_analysis_and_runtime():
    from onnxprune.graph.runtime import make_session, to_runtime_proto

    proto = paddle_like([-1, 3, 0, "?"])
    model = ir.serde.deserialize_model(proto)
    infer_shapes(model)
    assert dims(model.graph.inputs[0]) == (None, 3, None, None)
    session = make_session(to_runtime_proto(proto))
    assert [d if isinstance(d, int) and d > 0 else None
            for d in session.get_inputs()[0].shape] == [None, 3, None, None]


def test_input_shape_overrides_the_default_and_is_checked():
    model = paddle_like()
    resolved = resolve_input_shapes(model, {"x": (1, 3, 48, 96)})
    assert resolved.get("x").dims == (None, 3, 48, 96) and resolved.get("x").source == "given"
    with pytest.raises(UsageError, match="rank 3"):
        resolve_input_shapes(model, {"x": (3, 48, 96)})
    with pytest.raises(UsageError, match="axis 1 is 4, but the model fixes it to 3"):
        resolve_input_shapes(model, {"x": (1, 4, 48, 96)})
    with pytest.raises(UsageError, match="inputs: x"):
        resolve_input_shapes(model, {"y": (1, 3, 48, 96)})


def test_data_shapes_come_before_the_default():
    resolved = resolve_input_shapes(paddle_like(), data_shapes={"x": (3, 40, 72)})
    assert resolved.get("x").dims == (None, 3, 40, 72) and resolved.get("x").source == "data"


def test_detector_gets_the_first_size_its_concat_accepts():
    # stride 64: 224 is refused (Concat of 4 and 3 rows), 256 is the first that runs
    resolved = resolve_input_shapes(detector_like(64))
    assert resolved.get("images").dims == (1, 3, 256, 256)
    assert resolved.get("images").source == "probed"


@pytest.mark.parametrize("stated", ["[320, 320]", "320", "(320, 320)"])
def test_metadata_imgsz_is_used(stated):
    model = detector_like(64, metadata={"imgsz": stated})
    assert metadata_size(model) == (320, 320)
    entry = resolve_input_shapes(model).get("images")
    assert entry.dims == (1, 3, 320, 320) and entry.source == "metadata"


def test_no_workable_size_names_the_input_and_the_option():
    with pytest.raises(UnsupportedModelError, match=r"'x'.*--input-shape x:1x3xNxN"):
        resolve_input_shapes(fixed_size_only(50))
    resolved = resolve_input_shapes(fixed_size_only(50), {"x": (1, 3, 50, 50)})
    assert resolved.get("x").dims == (1, 3, 50, 50)
    unchecked = resolve_input_shapes(fixed_size_only(50), check=False).get("x")
    assert unchecked.dims == (1, 3, 224, 224) and unchecked.source == "default"


def test_parse_input_shapes_forms():
    assert parse_input_shapes(["a:b:1x3x8x8", "y:2X5"]) == {"a:b": (1, 3, 8, 8), "y": (2, 5)}
    assert parse_input_shapes({"x": [1, 3, 8, 8], "y": "1x4"}) == {"x": (1, 3, 8, 8),
                                                                 "y": (1, 4)}
    for bad in (["x:1x0"], ["1x3"], ["x:"], {"x": [1, -2]}):
        with pytest.raises(UsageError, match="NAME:D0xD1"):
            parse_input_shapes(bad)


def test_static_dim_probe_runs_at_the_run_shapes():
    proto = detector_like(64)
    model = ir.serde.deserialize_model(proto)
    infer_shapes(model)
    values = [n.outputs[0] for n in model.graph if n.op_type == "Concat"]
    assert probe_static_dims(model, values) == {}  # dims 2 and 3: the Concat fails
    with input_shapes.using(resolve_input_shapes(proto)):
        refined = probe_static_dims(model, values)
    # channels are static; H and W follow the input (256 -> 320 differ)
    assert refined[values[0].name] == (1, 64, None, None)


def test_alternate_keeps_divisibility_and_batch_open():
    entry = input_shapes.InputShape("x", (None, 3, 224, 48), (True, False, True, True), "given")
    assert entry.alternate().dims == (None, 3, 256, 64)


def test_recognizer_width_is_an_image_size_with_its_height_kept():
    # CRNN-like [N, 3, 32, W]: W is a spatial dim, not a 16-step sequence
    entry = resolve_input_shapes(paddle_like([-1, 3, 32, "w"])).get("x")
    assert entry.dims == (None, 3, 32, 224) and entry.source == "probed"
