"""Click options for calibration data, shared by ``compress`` and ``sensitivity``."""

from __future__ import annotations

__all__ = ["data_options", "input_shape_option", "parse_floats", "parse_input_shape",
           "parse_size"]

from collections.abc import Callable
from typing import Any

import click

from onnxprune.choices import CHANNEL_ORDERS, LAYOUTS


def parse_floats(ctx: click.Context, param: click.Parameter, value: str | None,
                 ) -> tuple[float, ...] | None:
    if value is None:
        return None
    try:
        return tuple(float(v) for v in value.replace(" ", "").split(",") if v)
    except ValueError:
        raise click.BadParameter(f"expected comma-separated numbers, got {value!r}") from None


def parse_size(ctx: click.Context, param: click.Parameter, value: str | None,
               ) -> tuple[int, int] | None:
    if value is None:
        return None
    parts = value.lower().replace("x", ",").split(",")
    try:
        sizes = tuple(int(p) for p in parts if p)
    except ValueError:
        raise click.BadParameter(f"expected H,W or N, got {value!r}") from None
    if len(sizes) == 1:
        sizes = sizes * 2
    if len(sizes) != 2 or min(sizes) < 1:
        raise click.BadParameter(f"expected H,W or N, got {value!r}")
    return sizes


def data_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """Add ``--data``, ``--batch-size``, ``--max-samples`` and the image options."""
    options = [
        click.option("--data", type=click.Path(path_type=str),
                     help="Calibration data: .npz (keys = input names [+ labels]), .npy, "
                          "or a folder of .npz/.npy shards or images."),
        click.option("--batch-size", type=int, default=32, show_default=True,
                     help="Samples per model run on the data."),
        click.option("--max-samples", type=int, default=1024, show_default=True,
                     help="Use at most N samples of --data (a seeded random subset)."),
        click.option("--image-size", callback=parse_size,
                     help="Image folders: resize to H,W (default: the model's input size)."),
        click.option("--mean", callback=parse_floats, default="0",
                     help="Image folders: per-channel mean of [0,1] pixels, e.g. "
                          "0.485,0.456,0.406."),
        click.option("--std", callback=parse_floats, default="1",
                     help="Image folders: per-channel std, e.g. 0.229,0.224,0.225."),
        click.option("--layout", type=click.Choice(LAYOUTS), default="nchw",
                     show_default=True, help="Image folders: the model's input layout."),
        click.option("--channel-order", type=click.Choice(CHANNEL_ORDERS), default="rgb",
                     show_default=True, help="Image folders: channel order the model expects."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def parse_input_shape(ctx: click.Context, param: click.Parameter, value: tuple[str, ...],
                      ) -> dict[str, tuple[int, ...]] | None:
    """``--input-shape NAME:1x3x48x192`` (repeatable) -> ``{name: dims}``."""
    from onnxprune.errors import UsageError
    from onnxprune.graph.input_shapes import parse_input_shapes

    try:
        return parse_input_shapes(value) or None
    except UsageError as exc:
        raise click.BadParameter(str(exc)) from None


def input_shape_option(func: Callable[..., Any]) -> Callable[..., Any]:
    """Add ``--input-shape`` (run-time input shapes, see onnxprune.graph.input_shapes)."""
    return click.option(
        "--input-shape", "input_shape", multiple=True, callback=parse_input_shape,
        metavar="NAME:D0xD1x..",
        help="Run-time shape of a model input, e.g. images:1x3x320x320 (repeatable); used "
             "by every run (checks, calibration, costs) [default: the shapes of --data, "
             "else a size the model accepts].")(func)
