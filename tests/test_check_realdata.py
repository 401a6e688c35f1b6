"""Regression checks against real minilm-l6 runs on the real evaluation data.

The committed baseline is checked against the session's ``real_records``
(SciFact runs once per test session). Real defects are shown on
STSBenchmark, the cheapest real task, and a data change on SciFact is shown
through the fingerprints of a changed copy of its files.
"""

from __future__ import annotations

import copy
import json
import shutil
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import pytest

from eval.check import DEFAULT_BASELINE_DIR, EXIT_OK, Status, check, exit_code, format_table, main
from eval.results import write_json_atomic

MINILM_BASELINE = DEFAULT_BASELINE_DIR / "minilm-l6.yaml"
PUBLISHED = {
    ("SciFact", "ndcg_at_10"): 0.64508,
    ("STSBenchmark", "cosine_spearman"): 0.82032,
    ("Banking77Classification", "accuracy"): 0.80042,
}

pytestmark = pytest.mark.realdata


def results_folder(real_records: dict) -> Path:
    """Return the results folder that contains all ``real_records`` (``<dir>/<model>/<revision>/<settings>/``)."""
    folders = {outcome.record_path.parents[3] for outcome in real_records.values()}
    assert len(folders) == 1, folders
    return folders.pop()


def test_committed_baseline_passes(real_records: dict) -> None:
    results = check([MINILM_BASELINE], records=[results_folder(real_records)])

    report = format_table(results)
    checked = {(result.task, result.metric): result for result in results}
    assert set(PUBLISHED) <= set(checked), report
    for key, published in PUBLISHED.items():
        assert checked[key].expected == published, key
        assert checked[key].status is Status.OK, report
    assert all(result.status is Status.OK for result in results), report
    assert exit_code(results) == EXIT_OK


def test_committed_baseline_cli_reports(real_records: dict, tmp_path: Path) -> None:
    junit, markdown = tmp_path / "junit.xml", tmp_path / "summary.md"

    code = main(
        [str(MINILM_BASELINE), "--records", str(results_folder(real_records)), "--junit", str(junit), "--markdown", str(markdown)]
    )

    assert code == EXIT_OK
    root = ElementTree.parse(junit).getroot()
    assert root.get("failures") == "0"
    assert root.get("errors") == "0"
    assert int(root.get("tests") or 0) >= 3
    assert markdown.read_text(encoding="utf-8").startswith("## Score regression check: OK")


def test_cls_pooling_fails(data_dir: Path, minilm_path: Path, tmp_path: Path) -> None:
    results = check(
        [MINILM_BASELINE],
        overrides=[f"data_dir={data_dir}", "model.pooling=cls"],
        tasks=["STSBenchmark"],
        results_dir=tmp_path / "results",
    )

    assert len(results) == 1
    result = results[0]
    report = format_table(results)
    assert result.status is Status.FAIL, report
    assert result.actual is not None
    assert result.delta == pytest.approx(result.actual - 0.82032)
    # Measured with this checkpoint: CLS pooling gives 0.735 on STSBenchmark.
    assert result.delta < -0.05, report
    assert f"{result.delta:+.6f}" in report
    assert "model.pooling: expected 'mean', got 'cls'" in "\n".join(result.notes)
    assert exit_code(results) != EXIT_OK


def test_changed_scifact_data_incomparable(real_records: dict, data_dir: Path, tmp_path: Path) -> None:
    from eval.beir_data import load_beir

    source = data_dir / "beir" / "scifact"
    changed = tmp_path / "data" / "beir" / "scifact"
    shutil.copytree(source, changed)
    corpus = changed / "corpus.jsonl"
    lines = corpus.read_text(encoding="utf-8").splitlines()
    first = json.loads(lines[0])
    first["text"] += " An edited sentence."
    lines[0] = json.dumps(first)
    corpus.write_text("\n".join(lines) + "\n", encoding="utf-8")

    outcome = real_records["SciFact"]
    assert load_beir(source, "test").fingerprints == outcome.record["harness"]["task"]["fingerprints"]["SciFact"]
    record = copy.deepcopy(outcome.record)
    record["harness"]["task"]["fingerprints"]["SciFact"] = load_beir(changed, "test").fingerprints
    records_dir = tmp_path / "records"
    write_json_atomic(records_dir / outcome.record_path.relative_to(results_folder(real_records)), record)

    results = check([MINILM_BASELINE], records=[records_dir], tasks=["SciFact"])

    report = format_table(results)
    assert [result.status for result in results] == [Status.INCOMPARABLE] * len(results), report
    notes = "\n".join(results[0].notes)
    assert "task.fingerprints.SciFact.corpus" in notes
    assert "task.fingerprints.SciFact.queries" not in notes
    assert results[0].actual == pytest.approx(0.64508, abs=1e-5)
    assert exit_code(results) != EXIT_OK
