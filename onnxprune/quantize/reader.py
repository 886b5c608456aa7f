"""ONNX Runtime's ``CalibrationDataReader`` fed from a :class:`DataSource`."""

from __future__ import annotations

__all__ = ["calibration_reader"]

from typing import Any

from onnxprune.data import DataSource


def calibration_reader(data: DataSource, batch_size: int) -> Any:
    """A reader yielding ``{input name: batch}`` feeds of ``data``, rewindable."""
    from onnxruntime.quantization import CalibrationDataReader

    class _Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.batches = 0
            self.rewind()

        def get_next(self) -> dict | None:
            feeds = next(self._iterator, None)
            if feeds is not None:
                self.batches += 1
            return feeds

        def rewind(self) -> None:
            self._iterator = iter(data.batches(batch_size))

    return _Reader()
