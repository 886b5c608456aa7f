"""Consistency rules for the sparsity, fine-tuning and quantization options.

1. ``target`` is required in modes ``structured`` and ``unstructured``; mode ``n:m``
   takes no target (its sparsity is ``(M - N) / M``).
2. ``nm`` is ``N:M`` with ``1 <= N < M``: at most ``N`` non-zero weights in every ``M``
   consecutive weights along the input-channel axis.
3. Fine-tuning needs ``data``. (Structured progressive pruning with fine-tuning runs
   in :mod:`onnxprune.pipeline.progressive`; ``quantize`` then quantizes its final
   model, :mod:`onnxprune.pipeline.sparse`.)
"""

from __future__ import annotations

__all__ = ["check_mode_options", "parse_nm"]


def parse_nm(text: str) -> tuple[int, int]:
    """``"2:4"`` -> ``(2, 4)`` (rule 2); ``ValueError`` otherwise."""
    try:
        n, m = (int(p) for p in text.split(":"))
    except ValueError:
        raise ValueError(f"option 'nm': expected N:M such as 2:4, got {text!r}") from None
    if not 1 <= n < m:
        raise ValueError(f"option 'nm': N:M needs 1 <= N < M, got {text!r}")
    return n, m


def check_mode_options(options) -> None:
    """Apply rules 1-3; raise ``ValueError`` with the message for the user."""
    if options.mode == "n:m":
        parse_nm(options.nm)
        if options.target is not None:
            raise ValueError("option 'target' does not apply to mode n:m (the sparsity is "
                             "(M-N)/M of --nm); leave it out")
    elif options.target is None:
        raise ValueError("option 'target' is required (in mode n:m the sparsity comes from "
                         "--nm instead)")
    if options.train_steps and options.finetune_epochs:
        raise ValueError("give the fine-tuning length once: --finetune-epochs or "
                         "--train-steps")
    if options.tunes() and not options.data:
        raise ValueError("fine-tuning (finetune_epochs/train_steps > 0) needs training data: "
                         "pass --data")
    if options.resume and options.steps == 1 and not options.tunes():
        raise ValueError("--resume continues a progressive run (--steps > 1 or fine-tuning)")
