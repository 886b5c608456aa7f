"""A fake ``onnxruntime`` module for benchmark tests: no model runs, a fake clock advances.

``FakeOrt(available=[...], durations={"a.onnx": 0.010})``: each ``run`` (or
``run_with_iobinding``) of a session made from a file named ``a.onnx`` advances the
shared :class:`FakeClock` by 10 ms, so every latency statistic is known exactly.
``drop`` lists providers a session silently leaves out (what real ORT does for a
provider the build lacks); ``placement`` is the provider each profiled node reports.
"""

from __future__ import annotations

import json
import os
import pathlib
import types

import numpy as np

ALL = ["TensorrtExecutionProvider", "CUDAExecutionProvider", "OpenVINOExecutionProvider",
       "NnapiExecutionProvider", "CoreMLExecutionProvider", "XnnpackExecutionProvider",
       "QNNExecutionProvider", "CPUExecutionProvider"]


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class _Options:
    def __init__(self) -> None:
        self.config: dict[str, str] = {}
        self.enable_profiling = False
        self.profile_file_prefix = "onnxruntime_profile_"

    def add_session_config_entry(self, key: str, value: str) -> None:
        self.config[key] = value


class FakeBinding:
    def __init__(self, session: FakeSession) -> None:
        self.session = session
        self.inputs: list[tuple[str, object]] = []
        self.outputs: list[tuple[str, str]] = []

    def bind_ortvalue_input(self, name: str, value: object) -> None:
        self.inputs.append((name, value))

    def bind_output(self, name: str, device: str, device_id: int = 0) -> None:
        self.outputs.append((name, device))

    def synchronize_inputs(self) -> None:
        pass

    def synchronize_outputs(self) -> None:
        pass


class FakeSession:
    def __init__(self, ort: FakeOrt, source: object, options: _Options,
                 providers: list) -> None:
        self.ort = ort
        self.options = options
        self.name = pathlib.Path(str(source)).name
        names = [p[0] if isinstance(p, tuple) else p for p in providers]
        self.requested = providers
        self.providers = [p for p in names if p not in ort.drop]
        self.host_runs = 0
        self.bound_runs = 0
        ort.sessions.append(self)

    def get_providers(self) -> list[str]:
        return list(self.providers)

    def get_inputs(self) -> list:
        return [types.SimpleNamespace(name="x", shape=["N", 4], type="tensor(float)")]

    def get_outputs(self) -> list:
        return [types.SimpleNamespace(name="y", shape=["N", 8], type="tensor(float)")]

    def _advance(self) -> list:
        self.ort.clock.now += self.ort.durations.get(self.name, 0.001)
        return [np.zeros((1, 8), np.float32)]

    def run(self, outputs: object, feeds: dict) -> list:
        self.host_runs += 1
        self.feeds = feeds
        return self._advance()

    def io_binding(self) -> FakeBinding:
        self.binding = FakeBinding(self)
        return self.binding

    def run_with_iobinding(self, binding: FakeBinding) -> None:
        assert binding is self.binding
        self.bound_runs += 1
        self._advance()

    def end_profiling(self) -> str:
        path = self.options.profile_file_prefix + "_fake.json"
        provider = self.ort.placement or self.providers[0]
        events = [{"cat": "Session", "name": "model_run"}] + [
            {"cat": "Node", "name": f"n{i}_kernel_time", "args": {"provider": provider}}
            for i in range(3)]
        pathlib.Path(path).write_text(json.dumps(events))
        return path


class FakeOrt(types.ModuleType):
    def __init__(self, available: list[str], durations: dict[str, float] | None = None,
                 drop: tuple[str, ...] = (), placement: str | None = None) -> None:
        super().__init__("onnxruntime")
        self.__version__ = "9.9.9"
        self.available = available
        self.durations = durations or {}
        self.drop = drop
        self.placement = placement
        self.clock = FakeClock()
        self.sessions: list[FakeSession] = []
        self.device_copies: list[tuple[str, str]] = []
        self.SessionOptions = _Options
        self.GraphOptimizationLevel = types.SimpleNamespace(
            ORT_DISABLE_ALL=0, ORT_ENABLE_BASIC=1, ORT_ENABLE_EXTENDED=2, ORT_ENABLE_ALL=99)
        fake = self

        class OrtValue:
            @staticmethod
            def ortvalue_from_numpy(array: np.ndarray, device: str, device_id: int = 0):
                fake.device_copies.append((device, str(array.shape)))
                return ("ortvalue", device)

        self.OrtValue = OrtValue

    def get_available_providers(self) -> list[str]:
        return list(self.available)

    def get_all_providers(self) -> list[str]:
        return list(ALL)

    def InferenceSession(self, source: object, options: _Options, providers: list):
        return FakeSession(self, source, options, providers)


def fake_models(tmp_path: os.PathLike[str]) -> tuple[pathlib.Path, pathlib.Path]:
    """Two real ONNX files (MatMul 4->8 and 4->4: MACs ratio 2) for ``model_info``."""
    import onnx

    from tests.builders import GraphBuilder

    paths = []
    for name, width in (("a.onnx", 8), ("b.onnx", 4)):
        b = GraphBuilder()
        x = b.input(["N", 4])
        b.output(b.op("MatMul", [x, b.weight(4, width)], name="mm"))
        path = pathlib.Path(tmp_path) / name
        onnx.save(b.model(), path)
        paths.append(path)
    return paths[0], paths[1]
