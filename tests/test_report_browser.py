"""The HTML report opened in headless Chromium: tables render, embedded figures decode, screenshot is not blank."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from eval.report import ReportOptions, build_report
from tests.test_report import results  # noqa: F401  (fixture)

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--hide-scrollbars"]

# Appended to a copy of the page only: the report itself carries no script.
PROBE = """
<script>
window.addEventListener("load", () => {
  const images = Array.from(document.images).map((image) => image.complete ? image.naturalWidth : -1);
  const tables = Array.from(document.querySelectorAll("table")).map((table) => table.rows.length);
  const probe = document.createElement("pre");
  probe.id = "probe";
  probe.textContent = "images=" + images.join(",") + ";tables=" + tables.join(",");
  document.body.appendChild(probe);
});
</script>
"""


def chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    pytest.skip("headless Chromium is not installed (apt-get install chromium)")


@pytest.fixture()
def report_page(results: Path, tmp_path: Path) -> Path:  # noqa: F811
    options = ReportOptions(n_resamples=300, baseline="prefix none", reference_env="transformers=5.23.0")
    return build_report([results], tmp_path / "report", options).files["html"]


def test_tables_and_figures_render(report_page: Path, tmp_path: Path):
    browser = chromium()
    probed = tmp_path / "probed.html"
    probed.write_text(report_page.read_text().replace("</body>", PROBE + "</body>"))

    completed = subprocess.run(
        [browser, *CHROMIUM_FLAGS, "--virtual-time-budget=5000", "--dump-dom", probed.as_uri()],
        capture_output=True, text=True, timeout=120, check=True,
    )
    match = re.search(r"images=([\d,-]*);tables=([\d,]*)", completed.stdout)
    assert match, completed.stdout[-2000:]
    widths = [int(value) for value in match.group(1).split(",") if value]
    rows = [int(value) for value in match.group(2).split(",") if value]

    assert len(widths) == 2  # scores with intervals, drift heatmap
    assert all(width > 300 for width in widths)
    assert rows == [3, 4, 5]  # header + 2 checkpoints, + 3 comparisons, + 4 drift rows


def test_screenshot_not_blank(report_page: Path, tmp_path: Path):
    browser = chromium()
    screenshot = tmp_path / "report.png"
    subprocess.run(
        [browser, *CHROMIUM_FLAGS, f"--screenshot={screenshot}", "--window-size=1400,2000", report_page.as_uri()],
        capture_output=True, timeout=120, check=True,
    )
    import matplotlib.image

    pixels = matplotlib.image.imread(screenshot)[..., :3]
    assert pixels.shape[:2] == (2000, 1400)
    not_white = np.mean(pixels.min(axis=-1) < 0.9)
    assert not_white > 0.02
    # Coloured heatmap or highlight cells, not only black text on white.
    saturation = pixels.max(axis=-1) - pixels.min(axis=-1)
    assert np.mean(saturation > 0.2) > 0.001
