"""Read the results records and the newest comparison report for the page's "Results" tab.

Records are found under the results folder by the layout of
:mod:`eval.results`; every ``<TaskName>.json`` beside its
``.per_query.json`` sidecar is read with :func:`eval.results.read_record`.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Optional

import pandas as pd

from eval.results import HARNESS_KEY, PER_QUERY_SUFFIX, main_score, read_record

logger = logging.getLogger(__name__)

# The page shows the columns in this order, the ones people compare first.
RESULT_COLUMNS = (
    "model",
    "task",
    "main score",
    "metric",
    "settings",
    "device",
    "environment",
    "revision",
    "type",
    "split",
    "git commit",
    "date",
    "record",
)
# Main scores on the page are rounded to this many decimals, as MTEB's leaderboard shows them.
SCORE_DECIMALS = 5

REPORT_DOCUMENT_SUFFIXES = (".md", ".html", ".csv")
_MARKDOWN_IMAGE = re.compile(r"!\[(?P<alt>[^\]]*)\]\((?P<target>[^)\s]+)(?:\s+\"[^\"]*\")?\)")
_URL_SCHEME = re.compile(r"^[a-z][a-z0-9+.-]*:", re.IGNORECASE)
IMAGE_SUFFIXES = (".png",)


@dataclass
class ResultsTable:
    """One row per record, and the files under the results folder that could not be read."""

    table: pd.DataFrame
    problems: list[str] = field(default_factory=list)


def record_files(results_dir: Path) -> list[Path]:
    """Return the record files under ``results_dir``, without the per-query sidecars.

    Only files at the record depth, ``<model>/<revision>/<settings>/<TaskName>.json``,
    count, so other JSON files kept under the results folder are not mistaken for records.
    """
    if not results_dir.is_dir():
        return []
    return sorted(
        path
        for path in results_dir.glob("*/*/*/*.json")
        if not path.name.endswith(PER_QUERY_SUFFIX) and not path.name.startswith(".")
    )


def _environment(harness: Mapping[str, Any]) -> str:
    environment = harness.get("environment", {})
    packages = environment.get("packages", {})
    hardware = environment.get("gpu") or environment.get("cpu") or "unknown hardware"
    parts = [
        hardware,
        f"torch {packages.get('torch', '?')}",
        f"transformers {packages.get('transformers', '?')}",
        f"mteb {packages.get('mteb', '?')}",
        f"Python {environment.get('python', '?')}",
    ]
    return ", ".join(parts)


def _row(path: Path, record: Mapping[str, Any], results_dir: Path) -> dict[str, Any]:
    harness = record[HARNESS_KEY]
    task = harness["task"]
    model = harness["model"]
    git = harness.get("git") or {}
    commit = (git.get("commit") or "")[:12]
    if commit and git.get("dirty"):
        commit += " (dirty)"
    date = pd.to_datetime(record["date"], unit="s", utc=True) if record.get("date") is not None else pd.NaT

    return {
        "model": model["model_id"],
        "revision": model["revision"],
        "task": task["name"],
        "type": task["type"],
        "split": task["split"],
        "metric": task["main_score_name"],
        "main score": round(main_score(record), SCORE_DECIMALS),
        "settings": harness.get("settings", path.parent.name),
        "device": model.get("device", ""),
        "environment": _environment(harness),
        "git commit": commit,
        "date": date,
        "record": str(path.relative_to(results_dir)),
    }


def load_results_table(results_dir: Path) -> ResultsTable:
    """Read every record under ``results_dir`` into a table, newest first.

    A file that is not a valid record is left out and named in ``problems``
    instead of failing the whole table.
    """
    rows = []
    problems = []
    for path in record_files(results_dir):
        try:
            record = read_record(path)
            rows.append(_row(path, record, results_dir))
        except (ValueError, KeyError, TypeError, ZeroDivisionError, OSError) as error:
            # A KeyError's message is only the key, so the problem calls it a missing key.
            reason = f"missing key {error}" if isinstance(error, KeyError) else str(error)
            logger.warning("Skipped %s: %s", path, reason)
            problems.append(f"{path.relative_to(results_dir)}: {reason}")

    table = pd.DataFrame(rows, columns=list(RESULT_COLUMNS))
    if not table.empty:
        table = table.sort_values(["date", "model", "task"], ascending=[False, True, True], kind="stable")
        table["date"] = table["date"].dt.strftime("%Y-%m-%d %H:%M UTC")
    logger.info("Read %d records from %s (%d files skipped)", len(table), results_dir, len(problems))
    return ResultsTable(table=table.reset_index(drop=True), problems=problems)


def filter_results(table: pd.DataFrame, *, model: Optional[str], task: Optional[str], text: str) -> pd.DataFrame:
    """Keep the rows of one model and one task (None keeps all) whose cells contain ``text``, case-insensitively."""
    mask = pd.Series(True, index=table.index)
    if model:
        mask &= table["model"] == model
    if task:
        mask &= table["task"] == task
    text = text.strip().lower()
    if text:
        cells = table.astype(str).apply(lambda column: column.str.lower().str.contains(text, regex=False))
        mask &= cells.any(axis=1)
    return table[mask].reset_index(drop=True)


@dataclass
class Report:
    """The newest comparison report: its folder, documents, tables and plots."""

    folder: Path
    markdown: Optional[Path]
    html: Optional[Path]
    tables: list[Path]
    images: list[Path]

    def read_table(self, path: Path) -> pd.DataFrame:
        """Read one of the report's CSV tables.

        Raises:
            ValueError: ``path`` is not one of the report's tables, or pandas cannot parse it.
            OSError: the file cannot be read.
        """
        if path not in self.tables:
            raise ValueError(f"{path} is not a table of the report in {self.folder}")
        return pd.read_csv(path)


def _newest_first(paths: list[Path]) -> list[Path]:
    return sorted(paths, key=lambda path: (path.stat().st_mtime, path.name), reverse=True)


def latest_report(reports_dir: Path) -> Optional[Report]:
    """Find the newest report under ``reports_dir``, or None when there is none.

    The newest Markdown, HTML or CSV file (by modification time) marks the
    report. Its folder and the subfolders supply the report's Markdown or HTML
    document, CSV tables and PNG plots.
    """
    # NOTE: reports are recognised by file type alone, so unrelated Markdown or
    # CSV files in the same folder are shown as part of the report.
    if not reports_dir.is_dir():
        return None
    documents = [
        path
        for path in reports_dir.rglob("*")
        if path.is_file() and path.suffix.lower() in REPORT_DOCUMENT_SUFFIXES and not path.name.startswith(".")
    ]
    if not documents:
        return None

    folder = _newest_first(documents)[0].parent
    files = [path for path in folder.rglob("*") if path.is_file() and not path.name.startswith(".")]
    by_suffix: dict[str, list[Path]] = {}
    for path in _newest_first(files):
        by_suffix.setdefault(path.suffix.lower(), []).append(path)

    markdown = by_suffix.get(".md", [None])[0]
    html = by_suffix.get(".html", [None])[0]
    # A report writes its tables and plots together, so they are listed by name, not by time.
    tables = sorted(by_suffix.get(".csv", []))
    images = sorted(path for suffix in IMAGE_SUFFIXES for path in by_suffix.get(suffix, []))
    return Report(folder=folder, markdown=markdown, html=html, tables=tables, images=images)


def replace_images(markdown: str) -> str:
    """Replace every Markdown image of a report by a line of text.

    The page serves the document's text, not its folder, so an image with a
    relative path would show as broken. The plots appear below the document
    instead. An image on another host would make the browser contact that
    host, so it is named, not loaded.
    """

    def describe(match: re.Match[str]) -> str:
        target = match.group("target")
        if _URL_SCHEME.match(target) or target.startswith("//"):
            return f"*(image {target} is not loaded)*"
        return f"*(figure {target}: see the plots below)*"

    return _MARKDOWN_IMAGE.sub(describe, markdown)
