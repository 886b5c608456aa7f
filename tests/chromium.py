"""Render a self-contained HTML page in headless Chromium (shared by the report tests)."""

from __future__ import annotations

__all__ = ["CHROMIUM", "needs_chromium", "render_in_chromium"]

import pathlib
import shutil
import subprocess

import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")

needs_chromium = pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed "
                                                             "(apt-get install chromium)")

# a probe (added to the rendered copy only) writes the image decode result into the title
_PROBE = ('<script>window.addEventListener("load",()=>{const i=[...document.images];'
          'document.title="images:"+i.length+":broken:"+i.filter(x=>!x.complete||'
          'x.naturalWidth===0).length;})</script></body>')


def render_in_chromium(page: str, folder: pathlib.Path) -> tuple[subprocess.CompletedProcess,
                                                                 list[str]]:
    """Chromium's run over ``page`` (with the probe) and its console lines."""
    path = folder / "probe.html"
    path.write_text(page.replace("</body>", _PROBE), encoding="utf-8")
    proc = subprocess.run(
        [CHROMIUM, "--headless=new", "--no-sandbox", "--disable-gpu", "--enable-logging=stderr",
         "--v=0", "--virtual-time-budget=5000", "--dump-dom", path.as_uri()],
        capture_output=True, text=True, timeout=90, check=False)
    console = [line for line in proc.stderr.splitlines() if ":CONSOLE" in line]
    return proc, console
