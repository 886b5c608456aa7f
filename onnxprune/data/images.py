"""A folder of images as model input, with an explicit preprocessing spec.

Rules:

1. Files with an image extension are found recursively and sorted by path. When
   every image sits in a sub-folder, the sub-folder names (sorted) are the class
   labels ``0..K-1`` (the ImageFolder convention); otherwise there are no labels.
2. Each image is decoded with Pillow, converted to RGB (3 channels) or L (1),
   resized to ``size`` (height, width) with bilinear filtering, scaled to [0, 1],
   put in ``channel_order``, normalised as ``(x - mean) / std`` per channel and laid
   out as ``nchw`` or ``nhwc``. Without ``size`` the model's static spatial dims are used,
   else the spatial dims of the run's resolved input shapes
   (:mod:`onnxprune.graph.input_shapes`).
3. A float model input gets float32 pixels; a uint8 input gets the raw 0..255 pixels
   (no scaling or normalisation). The model must have exactly one input.
4. Pillow is imported lazily; without it a :class:`RuntimeMissingError` says what to install.
"""

from __future__ import annotations

__all__ = ["IMAGE_EXTENSIONS", "ImageOptions", "ImageReader", "image_part"]

import dataclasses
import pathlib

import numpy as np

from onnxprune.data.readers import ArrayReader, MemoryReader
from onnxprune.data.source import LABELS, Part
from onnxprune.data.specs import InputSpec
from onnxprune.errors import DataError, RuntimeMissingError
from onnxprune.graph import input_shapes

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm",
                    ".pgm")


def _run_size(spec: InputSpec, nhwc: bool) -> tuple[int, int] | None:
    """Rule 2: the spatial dims of the run's shape of ``spec``, if any."""
    resolved = input_shapes.current()
    entry = resolved.get(spec.name) if resolved is not None else None
    if entry is None or len(entry.dims) != 4:
        return None
    spatial = entry.dims[1:3] if nhwc else entry.dims[2:4]
    return None if None in spatial else (int(spatial[0]), int(spatial[1]))


@dataclasses.dataclass(frozen=True)
class ImageOptions:
    size: tuple[int, int] | None = None
    mean: tuple[float, ...] = (0.0,)
    std: tuple[float, ...] = (1.0,)
    layout: str = "nchw"
    channel_order: str = "rgb"


def _pillow():
    try:
        from PIL import Image
    except ImportError as exc:
        raise RuntimeMissingError("reading image folders needs Pillow: "
                                  "pip install 'onnxprune[images]' (or pip install pillow)"
                                  ) from exc
    return Image


def find_images(folder: pathlib.Path) -> list[pathlib.Path]:
    return sorted(p for p in folder.rglob("*")
                  if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)


class ImageReader(ArrayReader):
    """Decodes and preprocesses images ``start:stop`` on each read (rule 2)."""

    def __init__(self, files: list[pathlib.Path], spec: InputSpec, options: ImageOptions,
                 origin: str) -> None:
        self.files, self.spec, self.options, self.origin = files, spec, options, origin
        if len(spec.shape) != 4:
            raise DataError(f"{origin}: input '{spec.name}' has rank {len(spec.shape)} "
                            f"({spec.describe()}); an image folder feeds rank-4 inputs only")
        nhwc = options.layout == "nhwc"
        channels = spec.shape[3] if nhwc else spec.shape[1]
        if channels not in (1, 3):
            raise DataError(f"{origin}: input '{spec.name}' ({spec.describe()}, layout "
                            f"{options.layout}) needs 1 or 3 channels on its channel axis; "
                            "check --layout")
        self.channels = channels
        spatial = spec.shape[1:3] if nhwc else spec.shape[2:4]
        size = options.size or (spatial if None not in spatial else _run_size(spec, nhwc))
        if size is None:
            raise DataError(f"{origin}: input '{spec.name}' has dynamic spatial size "
                            f"({spec.describe()}); give --image-size H,W")
        if options.size and None not in spatial and tuple(spatial) != tuple(options.size):
            raise DataError(f"{origin}: --image-size {options.size[0]},{options.size[1]} does "
                            f"not match input '{spec.name}' ({spec.describe()})")
        self.size = (int(size[0]), int(size[1]))
        self.raw = spec.dtype == np.uint8
        if not self.raw and not np.issubdtype(spec.dtype, np.floating):
            raise DataError(f"{origin}: input '{spec.name}' expects {spec.dtype}; images feed "
                            "float or uint8 inputs only")
        self.dtype = np.dtype(np.uint8) if self.raw else np.dtype(np.float32)
        h, w = self.size
        per = (h, w, channels) if nhwc else (channels, h, w)
        self.shape = (len(files), *per)
        self.mean = self._per_channel(options.mean, "mean")
        self.std = self._per_channel(options.std, "std")
        if np.any(self.std == 0):
            raise DataError("--std must not contain 0")

    def _per_channel(self, values: tuple[float, ...], what: str) -> np.ndarray:
        array = np.asarray(values, dtype=np.float32)
        if array.size == 1:
            return np.repeat(array, self.channels)
        if array.size != self.channels:
            raise DataError(f"--{what} has {array.size} values; the model reads "
                            f"{self.channels} channel(s)")
        return array

    def _load(self, path: pathlib.Path) -> np.ndarray:
        image_module = _pillow()
        try:
            with image_module.open(path) as image:
                image = image.convert("RGB" if self.channels == 3 else "L")
                image = image.resize((self.size[1], self.size[0]), image_module.BILINEAR)
                pixels = np.asarray(image)
        except DataError:
            raise
        except Exception as exc:
            raise DataError(f"{path}: not a readable image ({type(exc).__name__}: {exc})"
                            ) from exc
        if pixels.ndim == 2:
            pixels = pixels[:, :, None]
        if self.channels == 3 and self.options.channel_order == "bgr":
            pixels = pixels[:, :, ::-1]
        if self.raw:
            return np.ascontiguousarray(pixels)
        return (pixels.astype(np.float32) / 255.0 - self.mean) / self.std

    def read(self, start: int, stop: int) -> np.ndarray:
        batch = np.stack([self._load(p) for p in self.files[start:stop]]) if stop > start else \
            np.zeros((0, *self.shape[1:]), self.dtype)
        if self.options.layout == "nchw":
            batch = batch.transpose(0, 3, 1, 2)
        return np.ascontiguousarray(batch.astype(self.dtype, copy=False))


def image_part(folder: pathlib.Path, specs: list[InputSpec], options: ImageOptions) -> Part:
    """One part reading every image below ``folder`` (rules 1-3)."""
    origin = str(folder)
    if len(specs) != 1:
        raise DataError(f"{origin}: an image folder feeds single-input models; this model has "
                        f"inputs {', '.join(s.name for s in specs)} (use .npz files)")
    files = find_images(folder)
    if not files:
        raise DataError(f"{origin}: holds no .npz/.npy files and no images")
    _pillow()
    readers: dict[str, ArrayReader] = {specs[0].name: ImageReader(files, specs[0], options,
                                                                  origin)}
    parents = {p.parent for p in files}
    if folder not in parents:
        classes = sorted({p.relative_to(folder).parts[0] for p in files})
        labels = np.array([classes.index(p.relative_to(folder).parts[0]) for p in files],
                          dtype=np.int64)
        readers[LABELS] = MemoryReader(labels, f"{origin}[labels]")
    return Part(readers, origin)
