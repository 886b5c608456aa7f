"""Entry point of the fine-tuning child process: ``python -m onnxprune.training._child FD``.

See :mod:`onnxprune.training.isolate`; a separate module so that running it does not
re-execute a module the package already imported.
"""

from __future__ import annotations

__all__: list[str] = []

import sys

from onnxprune.training.isolate import child_main

if __name__ == "__main__":
    child_main(sys.argv[1:])
