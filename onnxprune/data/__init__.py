"""Data for calibration and training: ``--data`` files and folders, or synthetic inputs.

Entry points: :func:`open_data` (validated, streamed), :func:`synthetic_source`, and
the :class:`DataSource` API they return (``batches``, ``labeled_batches``, ``labels``,
``num_samples``, ``take``, ``split``).
"""

from __future__ import annotations

from onnxprune.data.images import ImageOptions
from onnxprune.data.load import open_data
from onnxprune.data.source import DataSource
from onnxprune.data.specs import InputSpec, model_input_specs
from onnxprune.data.synthetic import synthetic_source

__all__ = ["DataSource", "ImageOptions", "InputSpec", "model_input_specs", "open_data",
           "synthetic_source"]
