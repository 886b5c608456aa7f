"""Every closed set of values an option takes, declared once.

``CompressOptions`` (its ``Literal`` fields), the ``click.Choice`` of every CLI flag
(``compress``, ``sensitivity``, the data options) and the docs tests read these tuples;
nothing else spells them out.

Rules:

1. A set that a lower layer implements is read from that layer's registry, never
   copied: the criteria from :data:`onnxprune.importance.criteria.CRITERIA` (data-free)
   and :data:`onnxprune.importance.data_criteria.DATA_CRITERIA` (data-driven), the
   metrics and scopes from :mod:`onnxprune.planning.planner`, the recovery methods from
   :data:`onnxprune.recovery.RECOVERY_METHODS`, the losses from
   :data:`onnxprune.training.losses.LOSSES`, the optimizers from
   :data:`onnxprune.training.ort.OPTIMIZERS`. Adding an entry there adds the choice
   everywhere.
2. Values that only the orchestration decides (``auto``, ``latency``, the modes, the
   allocation, quantization, image layout and channel order, feature distillation) are
   declared here.
3. The first entry of each tuple is the default of its option.
4. This module imports only registries (no options, CLI or compress), so
   :mod:`onnxprune.options` and :mod:`onnxprune.cli` import it without cycles.
"""

from __future__ import annotations

__all__ = ["ALLOCATIONS", "CHANNEL_ORDERS", "CRITERIA", "DATA_CRITERIA", "DATA_FREE_CRITERIA",
           "DISTILL_FEATURES", "LAYOUTS", "LOSSES", "METRICS", "MODES", "OPTIMIZERS",
           "QUANTIZE", "RECOVER", "SCOPES", "SCORING_CRITERIA"]

from onnxprune.importance.criteria import CRITERIA as _DATA_FREE_REGISTRY
from onnxprune.importance.data_criteria import DATA_CRITERIA
from onnxprune.planning.planner import METRICS as _PLANNER_METRICS
from onnxprune.planning.planner import SCOPES
from onnxprune.recovery import RECOVERY_METHODS as _RECOVERY_METHODS
from onnxprune.training.losses import LOSSES
from onnxprune.training.ort import OPTIMIZERS

# -- criteria (rule 1): the importance registry, plus "auto" (taylor with data, else l1)
DATA_FREE_CRITERIA: tuple[str, ...] = tuple(_DATA_FREE_REGISTRY)
SCORING_CRITERIA: tuple[str, ...] = (*DATA_FREE_CRITERIA, *DATA_CRITERIA)
CRITERIA: tuple[str, ...] = ("auto", *SCORING_CRITERIA)
# -- planning: the planner's cost metrics, plus latency (onnxprune.planning.latency)
METRICS: tuple[str, ...] = (*_PLANNER_METRICS, "latency")
# -- recovery: "auto" (bias, or the better of bias/lsq on held-out data) first
RECOVER: tuple[str, ...] = ("auto", *_RECOVERY_METHODS)
ALLOCATIONS: tuple[str, ...] = ("threshold", "sensitivity")
# -- modes (rule 2); "N:M" (e.g. "2:4") is short for mode "n:m" with nm "N:M"
MODES: tuple[str, ...] = ("structured", "unstructured", "n:m")
QUANTIZE: tuple[str, ...] = ("none", "int8")
DISTILL_FEATURES: tuple[str, ...] = ("auto", "on", "off")
# -- image folders (onnxprune.data.images)
LAYOUTS: tuple[str, ...] = ("nchw", "nhwc")
CHANNEL_ORDERS: tuple[str, ...] = ("rgb", "bgr")
