"""What the steps of one compress run share: the run's context and the candidate model.

Rules:

1. :class:`RunContext` is opened once per run (:func:`open_run`): the destination
   (checked before any work), the staged output the result is written into (next to
   the destination, or in a scratch folder with ``write=False``), a scratch folder for
   intermediate models, the notes of the run and the progress callback.
2. A flow hands :func:`onnxprune.pipeline.finish.finish` one :class:`Candidate`: the
   model file it produced (already staged when ``path`` is the staged output's path),
   its numbers, its verification (``None``: finish checks it against the original) and
   its result sections. A post-step (``--quantize int8``) returns a new candidate.
"""

from __future__ import annotations

__all__ = ["Candidate", "RunContext", "file_size", "open_run", "staged_output"]

import contextlib
import dataclasses
import os
import pathlib
import tempfile
import time
from collections.abc import Callable
from typing import Any

from onnxprune.graph.io import StagedOutput, check_destination
from onnxprune.options import CompressOptions
from onnxprune.pipeline.result import Section, default_output

Progress = Callable[[dict], Any]


def staged_output(stack: contextlib.ExitStack, destination: pathlib.Path,
                  source: str | os.PathLike[str], write: bool) -> StagedOutput:
    """The :class:`StagedOutput` a flow writes its result into; with ``write=False`` it
    stages inside a scratch folder (removed with ``stack``) so nothing lands next to
    ``destination``."""
    if not write:
        scratch = stack.enter_context(tempfile.TemporaryDirectory(prefix="onnxprune-"))
        destination = pathlib.Path(scratch) / destination.name
    return stack.enter_context(StagedOutput(destination, source=source))


def file_size(path: pathlib.Path, data_name: str | None) -> int:
    """Bytes of a model file plus its external data file, if any."""
    size = path.stat().st_size
    if data_name:
        size += (path.parent / data_name).stat().st_size
    return size


@dataclasses.dataclass
class RunContext:
    """Rule 1."""

    model: str | os.PathLike[str]
    destination: pathlib.Path
    write: bool
    report: bool
    staged: StagedOutput
    scratch: pathlib.Path
    notes: list[str] = dataclasses.field(default_factory=list)
    progress: Progress = lambda info: None
    started: float = dataclasses.field(default_factory=time.perf_counter)
    auto_steps: bool = False  # steps were chosen by default (progressive rule 8)
    options: CompressOptions | None = None  # what the result records (a flow may change it)
    reference_sizes: dict[str, int] | None = None  # min_keep widths (compress argument)
    on_commit: list[Callable[[], Any]] = dataclasses.field(default_factory=list)  # after finish

    def seconds(self) -> float:
        return round(time.perf_counter() - self.started, 3)


def open_run(stack: contextlib.ExitStack, model: str | os.PathLike[str],
             output: str | os.PathLike[str] | None, *, write: bool, report: bool,
             progress: Progress | None, notes: list[str], auto_steps: bool) -> RunContext:
    """Rule 1 (everything opened here is removed with ``stack`` unless committed)."""
    destination = pathlib.Path(output or default_output(model))
    if write:
        check_destination(destination, model)
    staged = staged_output(stack, destination, model, write)
    scratch = pathlib.Path(stack.enter_context(
        tempfile.TemporaryDirectory(prefix="onnxprune-run-")))
    return RunContext(model, destination, write, report, staged, scratch, list(notes),
                      progress or (lambda info: None), auto_steps=auto_steps)


@dataclasses.dataclass
class Candidate:
    """Rule 2."""

    path: pathlib.Path
    achieved: float
    params_before: int
    params_after: int
    macs_before: float
    macs_after: float
    layers: list[dict]
    groups: list[dict]
    verification: dict | None
    notes: list[str] = dataclasses.field(default_factory=list)
    sections: tuple[Section, ...] = ()
    stages: dict[str, pathlib.Path] = dataclasses.field(default_factory=dict)

    def section(self, kind: type[Section]) -> Section | None:
        return next((s for s in self.sections if type(s) is kind), None)

    def with_section(self, section: Section) -> Candidate:
        kept = tuple(s for s in self.sections if type(s) is not type(section))
        return dataclasses.replace(self, sections=(*kept, section))

    _RECORD = ("achieved", "params_before", "params_after", "macs_before", "macs_after",
               "layers", "groups", "verification", "notes")

    def record(self) -> dict:
        """The numbers of a progressive step's work-dir record (``--resume``)."""
        record = {name: getattr(self, name) for name in self._RECORD}
        section = next((s for s in self.sections if "calibration" in s.report_keys()), None)
        record["calibration"] = section.report_keys()["calibration"] if section else None
        latency = next((s for s in self.sections if "latency" in s.report_keys()), None)
        if latency is not None:
            record["latency"] = latency.report_keys()["latency"]
        return record
