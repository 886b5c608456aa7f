"""The HTML report: self-contained, complete, renders in a browser without errors."""

from __future__ import annotations

import html.parser

import pytest

from onnxprune.errors import DataError
from onnxprune.reporting.html import render_html, write_html
from tests.chromium import needs_chromium, render_in_chromium


class _Refs(html.parser.HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.refs: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self.refs += [v or "" for k, v in attrs if k in ("src", "href", "srcset", "data")]


def _parse(page: str) -> _Refs:
    parser = _Refs()
    parser.feed(page)
    return parser


def test_page_is_self_contained(full_report, tmp_path):
    path = write_html(full_report, tmp_path / "report.html")
    page = path.read_text(encoding="utf-8")
    assert "http:" not in page and "https:" not in page and "//" not in page.split("<body>")[0]
    parsed = _parse(page)
    assert not {"script", "link", "iframe", "object"} & set(parsed.tags)
    assert parsed.refs and all(ref.startswith("data:image/png;base64,") for ref in parsed.refs)
    assert "@import" not in page and "url(" not in page


def test_page_has_every_section_and_ideal_next_to_measured(full_report):
    page = render_html(full_report)
    for heading in ("Summary", "Channels per layer", "MACs per layer", "Latency",
                    "Fidelity per step", "Sensitivity", "Groups", "Raw report"):
        assert f"<h2>{heading}</h2>" in page
    for alt in ("channels per layer", "MACs per layer", "latency per provider",
                "fidelity per step", "sensitivity curves"):
        assert f'<img alt="{alt}" src="data:image/png;base64,' in page
    assert page.count("<img ") == 5
    row = full_report["benchmark"]["providers"]["cpu"][0]
    assert f"{row['speedup']:.2f}x" in page
    ideal = full_report["macs_before"] / full_report["macs_after"]
    assert row["ideal_speedup"] == pytest.approx(ideal, rel=1e-3)
    assert f"Ideal speed-up (MACs ratio): <b>{ideal:.2f}x</b>" in page
    assert "cuda: not available in this build" in page


def test_optional_sections_say_which_key_fills_them(full_report):
    plain = {k: v for k, v in full_report.items()
             if k not in ("benchmark", "layer_macs", "steps", "sensitivity")}
    page = render_html(plain, plots=False)
    assert "<img" not in page
    assert "No <code>layer_macs</code>" in page and "No <code>benchmark</code>" in page
    assert "<h2>Channels per layer</h2>" in page


def test_report_strings_are_escaped(full_report):
    hostile = dict(full_report, notes=["<script>alert(1)</script>"])
    page = render_html(hostile, plots=False)
    assert "<script>" not in page and "&lt;script&gt;alert(1)" in page


def test_invalid_report_is_a_data_error(full_report):
    with pytest.raises(DataError, match="achieved"):
        render_html(dict(full_report, achieved="half"))


@needs_chromium
def test_page_renders_in_headless_chromium_without_console_errors(full_report, tmp_path):
    page = render_html(full_report)
    proc, console = render_in_chromium(page, tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert console == []
    assert f"<title>images:{page.count('<img ')}:broken:0</title>" in proc.stdout


def test_missing_matplotlib_is_a_clear_error_and_tables_still_work(full_report, monkeypatch):
    import sys

    from onnxprune.errors import RuntimeMissingError

    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    with pytest.raises(RuntimeMissingError, match=r"pip install 'onnxprune\[report\]'"):
        render_html(full_report)
    assert "<h2>Latency</h2>" in render_html(full_report, plots=False)


def test_max_drop_stop_is_explained_under_the_steps(full_report):
    budget = {"max_drop": 0.02, "metric": "accuracy", "reference": 0.98, "stopped_at": 3,
              "dropped": {"step": 3, "achieved": 0.61, "drop": 0.0523},
              "final": {"value_before": 0.97, "value_after": 0.975, "kept": True}}
    page = render_html(dict(full_report, budget=budget), plots=False)
    assert "step 3 (removing 0.610) lowered the accuracy by 0.0523" in page
    assert "0.9700 &rarr; 0.9750 (kept)" in page
    within = dict(full_report, budget={"max_drop": 0.02, "metric": "accuracy",
                                       "stopped_at": None})
    assert "every step stayed within the budget" in render_html(within, plots=False)
