"""The result of one compress run: core fields plus one typed section per flow.

Rules:

1. The core fields (input/output, options, achieved, params/MACs/bytes before and
   after, layers, groups, verification, seconds, notes, version, input shapes) are
   filled by every flow (:func:`onnxprune.pipeline.finish.finish`).
2. What only some flows produce is a *section*: a small frozen dataclass whose field
   names are report keys (:class:`Calibration`, :class:`Sparsity`, :class:`Quantization`,
   :class:`Evaluation`, :class:`Progressive`, :class:`Accuracy`, :class:`Latency`). A
   result holds at most one section of each type; there are no placeholders.
3. ``to_dict()`` is the report document of ``docs/report.schema.json``: the core
   fields, then every section key in :data:`SECTION_KEYS` order (``None`` where no
   section fills it), then ``input_shapes``. The section keys also read as attributes
   (``result.sparsity``, ``result.steps`` ...).
"""

from __future__ import annotations

__all__ = ["Accuracy", "Calibration", "CompressResult", "Evaluation", "Latency",
           "Progressive", "Quantization", "SECTION_KEYS", "Section", "Sparsity",
           "default_output", "run_shapes_dict"]

import copy
import dataclasses
import os
import pathlib
from typing import Any, ClassVar

from onnxprune._version import __version__
from onnxprune.graph import input_shapes

SECTION_KEYS = ("calibration", "sparsity", "quantization", "evaluation", "steps", "budget",
                "accuracy", "flow", "latency")


class Section:
    """Base of the result sections (rule 2): ``report_keys()`` are its report keys and values."""

    def report_keys(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}


@dataclasses.dataclass(frozen=True)
class Calibration(Section):
    """Data, criterion and recovery of the structural flows (:mod:`.calibrated`)."""

    calibration: dict


@dataclasses.dataclass(frozen=True)
class Sparsity(Section):
    """Modes unstructured / n:m: per-layer zeros, gzip sizes, the schedule's rows."""

    sparsity: dict
    steps: list[dict] | None = None


@dataclasses.dataclass(frozen=True)
class Quantization(Section):
    """``--quantize int8`` (:func:`onnxprune.quantize.quantize_int8`)."""

    quantization: dict


@dataclasses.dataclass(frozen=True)
class Evaluation(Section):
    """Original, pruned (and pruned+int8) side by side (:mod:`onnxprune.sparsity.evaluate`)."""

    evaluation: dict


@dataclasses.dataclass(frozen=True)
class Progressive(Section):
    """``--steps``: the step rows, the ``--max-drop`` budget, the flow kept and why."""

    steps: list[dict] | None = None
    budget: dict | None = None
    flow: dict | None = None


@dataclasses.dataclass(frozen=True)
class Accuracy(Section):
    """Task metric of original and result (:mod:`onnxprune.calibration.accuracy`)."""

    accuracy: dict


@dataclasses.dataclass(frozen=True)
class Latency(Section):
    """``--metric latency``: predicted against measured (:mod:`onnxprune.benchmark`)."""

    latency: dict


def run_shapes_dict() -> dict | None:
    """The current run-time input shapes as report data, or None outside a run."""
    resolved = input_shapes.current()
    return resolved.to_dict() if resolved is not None else None


@dataclasses.dataclass
class CompressResult:
    """Rules 1-3."""

    input: str
    output: str | None
    options: dict
    achieved: float
    params_before: int
    params_after: int
    macs_before: float
    macs_after: float
    size_before: int
    size_after: int | None
    layers: list[dict]
    groups: list[dict]
    verification: dict | None
    seconds: float
    notes: list[str]
    version: str = __version__
    sections: tuple[Section, ...] = ()
    # the run-time input shapes every run used, and why (onnxprune.graph.input_shapes)
    input_shapes: dict | None = dataclasses.field(default_factory=run_shapes_dict)

    _CORE: ClassVar[tuple[str, ...]] = (
        "input", "output", "options", "achieved", "params_before", "params_after",
        "macs_before", "macs_after", "size_before", "size_after", "layers", "groups",
        "verification", "seconds", "notes", "version")

    def section(self, kind: type[Section]) -> Section | None:
        return next((s for s in self.sections if type(s) is kind), None)

    def with_section(self, section: Section) -> CompressResult:
        """A copy holding ``section`` instead of any section of its type."""
        kept = tuple(s for s in self.sections if type(s) is not type(section))
        return dataclasses.replace(self, sections=(*kept, section))

    def _section_value(self, key: str) -> Any:
        for section in self.sections:
            value = section.report_keys().get(key)
            if value is not None:
                return value
        return None

    def to_dict(self) -> dict:
        document = {name: getattr(self, name) for name in self._CORE}
        document.update({key: self._section_value(key) for key in SECTION_KEYS})
        document["input_shapes"] = self.input_shapes
        return copy.deepcopy(document)


def _section_property(key: str) -> property:
    return property(lambda self: self._section_value(key),
                    doc=f"The ``{key}`` report key (a section's, or None).")


for _key in SECTION_KEYS:
    setattr(CompressResult, _key, _section_property(_key))


def default_output(model: str | os.PathLike[str]) -> pathlib.Path:
    path = pathlib.Path(model)
    return path.with_name(path.stem + ".pruned.onnx")
