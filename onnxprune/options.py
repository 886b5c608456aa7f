"""The options of ``compress``: one schema for the CLI, recipe files and the Python API.

Rules:

1. Every option has a default; unknown keys are errors naming the key and the
   allowed ones; a wrong value names the key and the allowed values.
2. A recipe is a YAML or JSON mapping of these keys (``model`` and ``output`` may
   also be given). CLI flags given explicitly override the recipe.
3. The effective options are stored in every result/report so a run can be
   repeated exactly.
"""

from __future__ import annotations

__all__ = ["CompressOptions", "load_recipe", "merge_options"]

import json
import pathlib
import re
from typing import Annotated, Any, Literal

import pydantic

from onnxprune.choices import (
    ALLOCATIONS,
    CHANNEL_ORDERS,
    CRITERIA,
    DISTILL_FEATURES,
    LAYOUTS,
    LOSSES,
    METRICS,
    MODES,
    OPTIMIZERS,
    QUANTIZE,
    RECOVER,
    SCOPES,
)
from onnxprune.errors import UsageError


class CompressOptions(pydantic.BaseModel):
    """Options of one compression run (see the README for each)."""

    model_config = pydantic.ConfigDict(extra="forbid", frozen=True)

    target: float | None = pydantic.Field(None, gt=0.0, lt=1.0)  # required unless mode n:m
    # the Literal choice sets are onnxprune.choices (one declaration, read by the CLI too)
    metric: Literal[METRICS] = "params"
    criterion: Literal[CRITERIA] = "auto"
    scope: Literal[SCOPES] = "global"
    # None: multiples of 8 channels (metric latency: "auto"); "auto": measured per group
    # (onnxprune.benchmark.layer_steps, onnxprune.planning.round_auto)
    round_to: Annotated[int, pydantic.Field(ge=1)] | Literal["auto"] | None = None
    min_keep: float = pydantic.Field(0.1, ge=0.0)
    ignore: tuple[str, ...] = ()
    seed: int = 0
    verify_equivalence: bool = True
    prune_hidden: bool = False
    # what to produce besides the pruned model
    bench: bool = False
    bench_runs: int = pydantic.Field(50, ge=1)
    html_report: str | None = None
    mobile: bool = False
    # -- calibration data, data-driven criteria, allocation, recovery (pipeline.calibrated)
    data: str | None = None
    batch_size: int = pydantic.Field(32, ge=1)
    max_samples: int | None = pydantic.Field(1024, ge=1)
    image_size: tuple[int, int] | None = None
    mean: tuple[float, ...] = (0.0,)
    std: tuple[float, ...] = (1.0,)
    layout: Literal[LAYOUTS] = "nchw"
    channel_order: Literal[CHANNEL_ORDERS] = "rgb"
    allocation: Literal[ALLOCATIONS] = "threshold"
    sensitivity_ratios: tuple[float, ...] = (0.1, 0.3, 0.5, 0.7)
    recover: Literal[RECOVER] = "auto"
    # -- end of calibration options
    # -- sparsity modes, progressive pruning, fine-tuning, INT8 quantization
    #    (onnxprune.sparsity, onnxprune.training, onnxprune.quantize)
    mode: Literal[MODES] = "structured"
    nm: str = pydantic.Field("2:4", pattern=r"^\s*\d+\s*:\s*\d+\s*$")
    quantize: Literal[QUANTIZE] = "none"
    steps: int | None = pydantic.Field(None, ge=1)  # None: 4 with --data (structured), else 1
    finetune_epochs: float | None = pydantic.Field(None, ge=0.0)  # None: 3 if steps > 1
    lr: float = pydantic.Field(1e-3, gt=0.0)
    loss: Literal[LOSSES] = "distill"
    optimizer: Literal[OPTIMIZERS] = "adamw"
    temperature: float = pydantic.Field(4.0, gt=0.0)
    eval_data: str | None = None
    train_steps: int | None = pydantic.Field(None, ge=1)  # optimizer steps per fine-tuning
    holdout: float = pydantic.Field(0.1, gt=0.0, lt=1.0)  # of --data, without --eval-data
    max_drop: float | None = pydantic.Field(None, ge=0.0)
    work_dir: str | None = None  # progressive runs: default <output>.steps
    resume: bool = False
    allow_frozen: bool = False  # fine-tune even when > 10% of the weights cannot train
    distill_features: Literal[DISTILL_FEATURES] = "auto"  # feature-map distillation
    accept_drop: bool = False  # write the result even when its held-out metric drops > budget
    # -- --metric latency (onnxprune.planning.latency, onnxprune.benchmark.latency_table)
    provider: str = "cpu"  # execution provider the latency is measured on
    threads: int = pydantic.Field(1, ge=1)  # intra-op threads of those measurements
    latency_runs: int = pydantic.Field(20, ge=1)  # timed runs per latency table point
    latency_cache: str | None = None  # None: $ONNXPRUNE_LATENCY_CACHE or ~/.cache/...
    # -- end of latency options
    # -- run-time input shapes (onnxprune.graph.input_shapes): name -> dims; a recipe
    #    may give {name: [1, 3, 320, 320]}, {name: "1x3x320x320"} or ["name:1x3x..."]
    input_shape: dict[str, tuple[int, ...]] | None = None

    @pydantic.field_validator("input_shape", mode="before")
    @classmethod
    def _parse_input_shape(cls, value: Any) -> Any:
        from onnxprune.graph.input_shapes import parse_input_shapes

        if value is None or value == {} or value == ():
            return None
        try:
            return parse_input_shapes(value)
        except UsageError as exc:
            raise ValueError(str(exc)) from None

    @pydantic.model_validator(mode="before")
    @classmethod
    def _short_nm_mode(cls, values: Any) -> Any:
        """``mode: "2:4"`` (any ``N:M``) is short for ``mode: n:m, nm: "2:4"``."""
        mode = values.get("mode") if isinstance(values, dict) else None
        if isinstance(mode, str) and re.fullmatch(r"\s*\d+\s*:\s*\d+\s*", mode):
            values = {**values, "mode": "n:m", "nm": mode.strip()}
        return values
    # -- end of run-time input shapes
    # -- executor of --allocation sensitivity cells (onnxprune.parallel): a local Ray
    #    with this many workers, or an existing cluster; neither: in process
    workers: int | None = pydantic.Field(None, ge=1)
    ray_address: str | None = None

    @pydantic.model_validator(mode="after")
    def _check_mode(self) -> CompressOptions:
        from onnxprune.sparsity.options import check_mode_options

        check_mode_options(self)
        return self

    def epochs(self) -> float:
        """Fine-tuning epochs per step: as given, else 3 with ``steps > 1`` (unless
        ``train_steps`` counts optimizer steps instead), else 0."""
        if self.finetune_epochs is not None:
            return float(self.finetune_epochs)
        if self.train_steps:
            return 0.0
        return 3.0 if (self.steps or 1) > 1 else 0.0

    def tunes(self) -> bool:
        """Whether every step is fine-tuned (by epochs or by ``train_steps``)."""
        return self.epochs() > 0 or bool(self.train_steps)

    def finetunes(self) -> bool:
        """Whether compress runs the progressive/fine-tuning flow."""
        return (self.steps or 1) > 1 or self.tunes()
    # -- end of sparsity/fine-tuning options

    def resolve_steps(self, training_available: bool) -> tuple[CompressOptions, str | None]:
        """Concrete ``steps`` and, when it was chosen here, a note saying why.

        Unset ``steps`` is 4 (progressive pruning with fine-tuning, the recipe that keeps
        accuracy) in structured mode when ``data`` is given and fine-tuning is not turned
        off (``finetune_epochs=0``) and the training build is installed; else 1.
        """
        if self.steps is not None:
            return self, None
        wanted = self.mode == "structured" and bool(self.data) and self.finetune_epochs != 0
        if wanted and training_available:
            note = ("--steps 4 (the default with --data): progressive pruning with "
                    "fine-tuning after each step; pass --steps 1 for one-shot pruning")
            return self.model_copy(update={"steps": 4}), note
        note = None
        if wanted:
            note = ("--data without the ONNX Runtime training build: one-shot pruning (pip "
                    "install 'onnxprune[train]' for the default 4 progressive steps with "
                    "fine-tuning)")
        return self.model_copy(update={"steps": 1}), note

    def plan_options(self):
        from onnxprune.planning import PlanOptions

        round_to = None if self.round_to == "auto" else self.round_to  # auto: calibrated.py
        return PlanOptions(self.target, self.metric, self.scope, round_to, self.min_keep)


RECIPE_EXTRA_KEYS = ("model", "output")


def _describe(error: dict[str, Any]) -> str:
    key = ".".join(str(p) for p in error["loc"]) or "recipe"
    if error["type"] == "extra_forbidden":
        allowed = ", ".join([*CompressOptions.model_fields, *RECIPE_EXTRA_KEYS])
        return f"unknown option '{key}' (allowed: {allowed})"
    if error["type"] == "missing":
        return f"option '{key}' is required"
    if error["type"] == "value_error" and not error["loc"]:  # model validators
        return str(error["msg"]).removeprefix("Value error, ")
    return f"option '{key}': {error['msg']} (got {error.get('input')!r})"


def build_options(values: dict[str, Any]) -> CompressOptions:
    """Validate a mapping into options; errors become :class:`UsageError` (rule 1)."""
    try:
        return CompressOptions(**values)
    except pydantic.ValidationError as exc:
        raise UsageError("; ".join(_describe(e) for e in exc.errors())) from exc


def load_recipe(path: str | pathlib.Path) -> dict[str, Any]:
    """Read a YAML or JSON recipe into a plain mapping (rule 2)."""
    path = pathlib.Path(path)
    if not path.is_file():
        raise UsageError(f"{path}: recipe file not found")
    text = path.read_text()
    try:
        if path.suffix.lower() == ".json":
            data = json.loads(text)
        else:
            import yaml

            data = yaml.safe_load(text)
    except Exception as exc:
        raise UsageError(f"{path}: cannot parse recipe: {exc}") from exc
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise UsageError(f"{path}: a recipe must be a mapping of option names to values")
    return data


def merge_options(recipe: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """Recipe values, then explicitly given overrides on top (rule 2)."""
    merged = {k: v for k, v in recipe.items() if k not in RECIPE_EXTRA_KEYS}
    merged.update(overrides)
    if "ignore" in merged and isinstance(merged["ignore"], str):
        merged["ignore"] = (merged["ignore"],)
    return merged
