"""Every report section of a compress run, written the same way for every flow.

Rules:

1. ``<output>.report.json`` is the result (:meth:`CompressResult.to_dict`) plus
   ``layer_macs`` (per-node MACs of input and output), ``benchmark`` with
   ``--bench`` (original against result, CPU, one thread, interleaved) and ``mobile``
   with ``--mobile`` (ORT-format export of the output, usability shares).
2. With ``--report PATH`` (``html_report``) the same document is also the HTML page.
"""

from __future__ import annotations

__all__ = ["report_document", "write_reports"]

import logging

from onnxprune.options import CompressOptions
from onnxprune.pipeline.result import CompressResult
from onnxprune.reporting.report import report_path, write_report

logger = logging.getLogger(__name__)


def write_reports(result: CompressResult, options: CompressOptions) -> None:
    """Rules 1-2 (every compress flow)."""
    document = report_document(result, options)
    write_report(document, report_path(result.output))
    if options.html_report:
        from onnxprune.reporting.html import write_html

        write_html(document, options.html_report)


def report_document(result: CompressResult, options: CompressOptions) -> dict:
    """Rule 1: the result plus per-layer MACs, benchmark and mobile sections."""
    from onnxprune.reporting.macs import layer_macs

    document = result.to_dict()
    document["layer_macs"] = layer_macs(result.input, result.output)
    if options.bench:
        from onnxprune.benchmark import compare

        logger.info("benchmarking original against pruned (%d runs)", options.bench_runs)
        document["benchmark"] = compare(result.input, result.output, providers=["cpu"],
                                        threads=[1], runs=options.bench_runs, warmup=10)
    if options.mobile:
        from onnxprune.mobile import export_mobile

        document["mobile"] = export_mobile(result.output, bench=options.bench)
    return document
