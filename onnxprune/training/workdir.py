"""The work directory of a progressive run: each step's model and record, for ``--resume``.

Rules:

1. The directory holds ``state.json`` (a fingerprint of the input model and options,
   one record per finished step, and how the run ended) and ``step<t>.onnx`` (the
   model after step ``t``, fine-tuned). Every file is written atomically (temporary
   file, then rename), each model before the record that names it, so an
   interruption leaves at most a file no record points to.
2. A fresh run refuses a directory whose ``state.json`` records an *unfinished* run
   (:class:`UsageError`: pass ``--resume`` or another ``--work-dir``): nothing is
   overwritten. A run whose output was written (``finished``) is replaced by a fresh
   run (its step models are deleted), so rerunning the same command works.
   ``--resume`` needs the same fingerprint (the same input file bytes and the same
   options, apart from where outputs go and what is produced besides the model) and
   continues after the last recorded step (a finished run is only written again);
   with nothing recorded it starts fresh.
3. Records are plain JSON: the step's row (``steps`` of the report) and the dict of
   the step's one-shot ``compress`` result.
"""

from __future__ import annotations

__all__ = ["FINGERPRINT_IGNORED", "WorkDir"]

import dataclasses
import hashlib
import json
import os
import pathlib
from typing import Any

import onnx

from onnxprune.errors import UsageError

STATE = "state.json"
# options that do not change the steps' models
FINGERPRINT_IGNORED = ("resume", "work_dir", "bench", "bench_runs", "html_report", "mobile",
                       "quantize")


def fingerprint(model: str | os.PathLike[str], options: dict) -> str:
    """SHA-256 of the model file's bytes and the options that shape the steps."""
    digest = hashlib.sha256()
    with open(model, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    kept = {k: v for k, v in sorted(options.items()) if k not in FINGERPRINT_IGNORED}
    digest.update(json.dumps(kept, sort_keys=True, default=str).encode())
    return digest.hexdigest()


def _write_atomic(path: pathlib.Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


@dataclasses.dataclass
class WorkDir:
    """Rules 1-3 for one directory."""

    path: pathlib.Path
    fingerprint: str
    records: list[dict]
    ended: dict | None = None   # {"stopped_at": t, "final": record} once the schedule ended
    finished: bool = False      # the output was written

    @classmethod
    def open(cls, path: str | os.PathLike[str], model: str | os.PathLike[str],
             options: dict, resume: bool) -> WorkDir:
        path = pathlib.Path(path)
        key = fingerprint(model, options)
        state = path / STATE
        if state.is_file():
            try:
                saved = json.loads(state.read_text())
            except (OSError, json.JSONDecodeError) as exc:
                raise UsageError(f"{state}: unreadable work-dir state ({exc}); remove the "
                                 "directory or pass another --work-dir") from exc
            if saved.get("records") and not resume and not saved.get("finished"):
                raise UsageError(
                    f"{path} holds an earlier run ({len(saved['records'])} step(s) done); "
                    "pass --resume to continue it, or another --work-dir")
            if resume and saved.get("records"):
                if saved.get("fingerprint") != key:
                    raise UsageError(
                        f"--resume: {path} belongs to a run with another model file or other "
                        "options; run with the same ones, or another --work-dir")
                work = cls(path, key, list(saved["records"]), saved.get("ended"))
                for record in work.records:
                    if not work.model_path(record["row"]["step"]).is_file():
                        raise UsageError(f"--resume: {work.model_path(record['row']['step'])} "
                                         "is missing; remove the work dir to start again")
                return work
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UsageError(f"cannot create work dir {path}: {exc}") from exc
        if state.is_file() and not resume:  # a finished run's models (rule 2)
            _remove_models(path, saved)
        work = cls(path, key, [])
        work._save_state()
        return work

    def model_path(self, step: int | str) -> pathlib.Path:
        return self.path / f"step{step}.onnx"

    def save_model(self, step: int | str, model: onnx.ModelProto) -> pathlib.Path:
        target = self.model_path(step)
        _write_atomic(target, model.SerializeToString())
        return target

    def add(self, step: int | str, model: onnx.ModelProto, record: dict) -> pathlib.Path:
        """Store a finished step: its model, then the record naming it."""
        target = self.save_model(step, model)
        self.records.append(record)
        self._save_state()
        return target

    def end(self, stopped_at: int | None, final: dict | None, budget: dict | None) -> None:
        """The schedule ended (at ``stopped_at`` when the budget stopped it)."""
        self.ended = {"stopped_at": stopped_at, "final": final, "budget": budget}
        self._save_state()

    def finish(self) -> None:
        """The output was written: a later fresh run may replace this one (rule 2)."""
        self.finished = True
        self._save_state()

    def _save_state(self) -> None:
        document = {"fingerprint": self.fingerprint, "records": self.records,
                    "ended": self.ended, "finished": self.finished}
        _write_atomic(self.path / STATE, json.dumps(document, indent=1,
                                                    default=_plain).encode())


def _remove_models(path: pathlib.Path, saved: dict) -> None:
    """Delete the step models a saved (finished) run recorded, nothing else."""
    steps = [r["row"]["step"] for r in saved.get("records", [])] + ["final"]
    for step in steps:
        target = path / f"step{step}.onnx"
        if target.is_file():
            target.unlink()


def _plain(value: Any) -> Any:
    """JSON for numpy scalars and paths in records."""
    if hasattr(value, "item"):
        return value.item()
    return str(value)
