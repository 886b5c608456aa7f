"""The sparsity/INT8 evaluation table reads the one fidelity module
(``calibration.fidelity``): a row is its summary plus ``max_rel_diff``."""

from __future__ import annotations

import numpy as np
import pytest

from onnxprune.calibration import fidelity as metrics
from onnxprune.sparsity import evaluate
from tests.calibration.test_fidelity import classifier, data_for


def _outputs(seed: int):
    original, other = classifier(seed=0), classifier(seed=seed)
    labels = np.arange(64) % 4
    data = data_for(original, labels=labels)
    heads = metrics.fidelity_heads(original, other)
    reference, got_labels = metrics.outputs_on(original, heads, data, 16)
    outputs, _ = metrics.outputs_on(other, heads, data, 16)
    return outputs, reference, got_labels, heads


def test_a_row_is_the_fidelity_summary_plus_max_rel_diff():
    outputs, reference, labels, heads = _outputs(seed=3)
    row = evaluate.evaluation_row(outputs, reference, labels, heads)
    summary = metrics.compare(outputs, reference, heads, labels)
    assert "reference_accuracy" in summary and "reference_accuracy" not in row
    assert {k: v for k, v in row.items() if k != "max_rel_diff"} == \
        {k: v for k, v in summary.items() if k != "reference_accuracy"}
    probs = outputs[heads[0].output]
    ref = reference[heads[0].output]
    assert row["max_rel_diff"] == pytest.approx(np.abs(probs - ref).max() / np.abs(ref).max())
    assert row["max_rel_diff"] > 0


def test_the_reference_row_has_no_difference():
    outputs, reference, labels, heads = _outputs(seed=0)
    row = evaluate.evaluation_row(reference, reference, labels, heads)
    assert row["max_rel_diff"] == 0.0 and row["agreement"] == 1.0
    assert metrics.max_rel_diff(outputs, reference, []) is None


def test_only_the_fidelity_module_is_called_fidelity():
    assert not hasattr(evaluate, "fidelity")
    assert "fidelity" not in evaluate.__all__
