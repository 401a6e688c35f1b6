"""Comparison report: record loading, tables, escaping, files and the command line, on synthetic records."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path
from typing import Optional

import numpy as np
import pandas as pd
import pytest

from eval.report import ReportInputError, ReportOptions, build_report
from eval.report import __main__ as report_cli
from eval.report import records as report_records
from eval.report import render, tables
from eval.results import per_query_path, record_path, settings_slug, write_json_atomic

PACKAGES = {
    "torch": "2.13.0+cpu",
    "transformers": "5.23.0",
    "tokenizers": "0.23.3",
    "mteb": "2.26.24",
    "beir": "2.2.0",
    "sentence-transformers": "6.2.0",
    "numpy": "2.4.6",
    "datasets": "5.2.0",
}
TASKS = {
    "SciFact": ("Retrieval", "ndcg_at_10"),
    "NFCorpus": ("Retrieval", "ndcg_at_10"),
    "STSBenchmark": ("STS", "cosine_spearman"),
    "Banking77Classification": ("Classification", "accuracy"),
}


def write_record(
    root: Path,
    task_name: str,
    *,
    model_id: str = "org/model",
    prefix_scheme: str = "none",
    packages: Optional[dict] = None,
    values: Optional[np.ndarray] = None,
    gold: Optional[np.ndarray] = None,
    date: float = 1.0,
    fingerprint: str = "abc",
) -> Path:
    """Write a record and its sidecar in the layout ``python -m eval`` uses; return the record path."""
    task_type, metric = TASKS[task_name]
    if task_type == "STS":
        sidecar = {"kind": "sts_pairs", "gold": gold.tolist(), "predicted": values.tolist(), "scores": {}}
        from scipy.stats import spearmanr

        score = float(spearmanr(gold, values).statistic)
    else:
        kind = "per_query" if task_type == "Retrieval" else "per_item"
        sidecar = {"kind": kind, "scores": {str(index): float(value) for index, value in enumerate(values)}}
        score = float(np.mean(values))

    settings = settings_slug(prefix_scheme=prefix_scheme, pooling="mean", max_length=256, dtype="float32", normalize=True)
    path = record_path(root, model_id=model_id, revision="rev1", settings=settings, task_name=task_name)
    record = {
        "task_name": task_name,
        "date": date,
        "scores": {"test": [{"main_score": score, metric: score, "hf_subset": "default", "languages": ["eng"]}]},
        "harness": {
            "schema_version": 1,
            "settings": settings,
            "task": {
                "name": task_name,
                "type": task_type,
                "split": "test",
                "main_score_name": metric,
                "fingerprints": {task_name: {"data": fingerprint}},
            },
            "model": {
                "model_id": model_id,
                "revision": "rev1",
                "prefix_scheme": prefix_scheme,
                "max_length": 256,
                "dtype": "float32",
                "pooling": "mean",
                "normalize": True,
                "device": "cpu",
            },
            "environment": {"packages": {**PACKAGES, **(packages or {})}},
        },
    }
    write_json_atomic(per_query_path(path), {"task_name": task_name, "split": "test", "metric": metric, **sidecar})
    write_json_atomic(path, record)
    return path


@pytest.fixture()
def results(tmp_path: Path) -> Path:
    """Two checkpoints on three tasks; the baseline also on a second transformers release."""
    rng = np.random.default_rng(0)
    root = tmp_path / "results"
    scifact = rng.beta(2, 2, 120)
    banking = rng.integers(0, 11, 300) / 10
    gold = np.round(rng.uniform(0, 5, 200), 1)
    sts_predicted = gold + rng.normal(0, 1.0, 200)

    noise = rng.normal(0, 0.05, 120)
    for prefix, shift in (("none", 0.0), ("e5", 0.08)):
        write_record(root, "SciFact", prefix_scheme=prefix, values=np.clip(scifact + shift + (noise if shift else 0), 0, 1))
        write_record(root, "Banking77Classification", prefix_scheme=prefix, values=banking)
        write_record(root, "STSBenchmark", prefix_scheme=prefix, values=sts_predicted, gold=gold)

    other = tmp_path / "matrix" / "torch-2.13.0_transformers-4.57.6"
    drifted = scifact.copy()
    drifted[:3] = np.clip(drifted[:3] - 0.3, 0, 1)
    write_record(other, "SciFact", packages={"transformers": "4.57.6", "tokenizers": "0.22.2"}, values=drifted)
    write_record(other, "STSBenchmark", packages={"transformers": "4.57.6", "tokenizers": "0.22.2"}, values=sts_predicted + 1e-9, gold=gold)
    return tmp_path


def options(**overrides) -> ReportOptions:
    return ReportOptions(n_resamples=500, **{"baseline": "prefix none", "reference_env": "transformers=5.23.0", **overrides})


def test_load_records_labels(results: Path):
    frame = report_records.load_records([results])
    assert len(frame) == 8
    assert frame["checkpoint"].nunique() == 2
    assert set(frame["environment"]) == {
        "torch 2.13.0+cpu, transformers 5.23.0, tokenizers 0.23.3",
        "torch 2.13.0+cpu, transformers 4.57.6, tokenizers 0.22.2",
    }
    assert frame["checkpoint"].str.contains("org/model @ rev1 (prefix e5, mean, len 256, float32)", regex=False).any()


def test_load_records_skips_manifest(results: Path):
    (results / "matrix" / "matrix.json").write_text(json.dumps({"pairs": []}))

    frame = report_records.load_records([results])

    assert len(frame) == 8
    assert frame.attrs["skipped_files"] == []


def test_load_records_empty_folder(tmp_path: Path):
    with pytest.raises(ReportInputError, match="no results record found"):
        report_records.load_records([tmp_path])


def test_newest_duplicate_kept(tmp_path: Path):
    write_record(tmp_path / "a", "SciFact", values=np.full(10, 0.2), date=1.0)
    write_record(tmp_path / "b", "SciFact", values=np.full(10, 0.4), date=2.0)
    frame = report_records.load_records([tmp_path])
    assert len(frame) == 1
    assert frame["main_score"].iloc[0] == pytest.approx(0.4)


def test_reference_env_selection(results: Path):
    frame = report_records.load_records([results])
    assert "transformers 4.57.6" in report_records.select_environment(frame, "transformers=4.57.6")
    assert "transformers 5.23.0" in report_records.select_environment(frame, "torch=2.13.0,tokenizers=0.23.3")
    assert "transformers 5.23.0" in report_records.select_environment(frame, None)
    with pytest.raises(ReportInputError, match="no environment matches"):
        report_records.select_environment(frame, "transformers=9.9")
    with pytest.raises(ReportInputError, match="unknown environment key"):
        report_records.select_environment(frame, "cuda=12")
    with pytest.raises(ReportInputError, match="write key=value"):
        report_records.select_environment(frame, "transformers")


def test_checkpoint_table_averages(results: Path, tmp_path: Path):
    write_record(results / "results", "NFCorpus", model_id="org/other", values=np.full(20, 0.3))
    write_record(results / "results", "NFCorpus", prefix_scheme="e5", values=np.full(20, 0.5))
    frame = report_records.load_records([results])
    reference = report_records.select_environment(frame, "transformers=5.23.0")
    table = tables.checkpoint_table(frame, reference)

    assert list(table.columns) == [
        "Banking77Classification", "NFCorpus", "SciFact", "STSBenchmark", "Average Retrieval", "Average",
    ]
    e5 = table.loc[table.index.str.contains("prefix e5")].iloc[0]
    assert e5["Average Retrieval"] == pytest.approx((e5["NFCorpus"] + e5["SciFact"]) / 2)
    assert e5["Average"] == pytest.approx(e5[["Banking77Classification", "STSBenchmark", "NFCorpus", "SciFact"]].mean())

    none = table.loc[table.index.str.contains("org/model.*prefix none", regex=True)].iloc[0]
    assert np.isnan(none["NFCorpus"])
    assert np.isnan(none["Average Retrieval"])
    assert np.isnan(none["Average"])
    other = table.loc[table.index.str.startswith("org/other")].iloc[0]
    assert np.isnan(other["Average"])


def test_checkpoint_table_prefers_reference(results: Path):
    frame = report_records.load_records([results])
    reference = report_records.select_environment(frame, "transformers=4.57.6")
    table = tables.checkpoint_table(frame, reference)
    drifted = frame[(frame["transformers"] == "4.57.6") & (frame["task_name"] == "SciFact")]["main_score"].iloc[0]
    assert table.loc[table.index.str.contains("prefix none"), "SciFact"].iloc[0] == pytest.approx(drifted)


def test_best_value_marked(results: Path):
    frame = report_records.load_records([results])
    table = tables.checkpoint_table(frame, report_records.select_environment(frame, None))
    formatted, best = render.checkpoint_display(table)
    e5_row = formatted.index[formatted["checkpoint"].str.contains("prefix e5")][0]
    assert best.loc[e5_row, "SciFact"]
    assert best["Banking77Classification"].all()  # a tie marks both rows
    assert not best["checkpoint"].any()


def test_drift_table_flags(results: Path):
    frame = report_records.load_records([results])
    reference = report_records.select_environment(frame, "transformers=5.23.0")
    drift = tables.drift_table(frame, reference, tolerance=0.001, n_resamples=300)

    assert set(drift["task_name"]) == {"SciFact", "STSBenchmark"}
    scifact = drift[(drift["task_name"] == "SciFact") & ~drift["reference"]].iloc[0]
    expected = frame[(frame["task_name"] == "SciFact") & (frame["transformers"] == "4.57.6")]["main_score"].iloc[0] - frame[
        (frame["task_name"] == "SciFact") & (frame["transformers"] == "5.23.0") & frame["checkpoint"].str.contains("prefix none")
    ]["main_score"].iloc[0]
    assert scifact["delta"] == pytest.approx(expected)
    assert scifact["delta"] < -0.001
    assert scifact["exceeds"]
    assert 0 < scifact["p_value"] <= 1

    sts = drift[(drift["task_name"] == "STSBenchmark") & ~drift["reference"]].iloc[0]
    assert abs(sts["delta"]) < 1e-6
    assert not sts["exceeds"]

    loose = tables.drift_table(frame, reference, tolerance=0.001, task_tolerances={"SciFact": 0.5}, n_resamples=300)
    assert not loose["exceeds"].any()


def test_significance_holm(results: Path):
    frame = report_records.load_records([results])
    reference = report_records.select_environment(frame, None)
    baseline = tables.select_checkpoint(frame, "prefix none")
    table = tables.significance_table(frame, reference, baseline, n_resamples=1000)

    assert list(table["task_name"]) == ["Banking77Classification", "STSBenchmark", "SciFact"]
    scifact = table.set_index("task_name").loc["SciFact"]
    assert scifact["significant"]
    assert scifact["delta"] > 0.05
    assert scifact["ci_low"] < scifact["delta"] < scifact["ci_high"]
    identical = table.set_index("task_name").loc["Banking77Classification"]
    assert identical["p_value"] == 1.0
    assert not identical["significant"]
    assert (table["p_holm"] >= table["p_value"]).all()


def test_significance_skips_other_data(tmp_path: Path):
    write_record(tmp_path, "SciFact", values=np.full(10, 0.2), fingerprint="one")
    write_record(tmp_path, "SciFact", prefix_scheme="e5", values=np.full(10, 0.4), fingerprint="two")
    frame = report_records.load_records([tmp_path])
    table = tables.significance_table(frame, report_records.select_environment(frame, None), tables.select_checkpoint(frame, "none"), n_resamples=200)
    assert table["note"].iloc[0].startswith("different data")
    assert pd.isna(table["p_value"].iloc[0])


def test_baseline_selection_errors(results: Path):
    frame = report_records.load_records([results])
    with pytest.raises(ReportInputError, match="matches no checkpoint"):
        tables.select_checkpoint(frame, "prefix mteb")
    with pytest.raises(ReportInputError, match="matches 2 checkpoints"):
        tables.select_checkpoint(frame, "org/model")


def test_report_files(results: Path, tmp_path: Path):
    output = build_report([results], tmp_path / "report", options())

    for key in ("markdown", "html", "checkpoints_csv", "significance_csv", "drift_csv", "scores_png", "drift_png"):
        assert output.files[key].is_file(), key
    assert output.files["scores_png"].read_bytes().startswith(b"\x89PNG")

    with output.files["checkpoints_csv"].open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 2
    assert float(rows[0]["SciFact"]) == pytest.approx(output.checkpoints["SciFact"].iloc[0])


def test_markdown_is_github_table(results: Path, tmp_path: Path):
    output = build_report([results], tmp_path / "report", options())
    text = output.files["markdown"].read_text()
    table_lines = [line for line in text.splitlines() if line.startswith("|")]

    header = text.split("## Checkpoints", 1)[1].split("## Significance", 1)[0]
    lines = [line for line in header.splitlines() if line.startswith("|")]
    assert len(lines) == 2 + 2  # header, separator, two checkpoints
    assert re.fullmatch(r"\|(\s*:?-+:?\s*\|)+", lines[1])
    columns = {line.count("|") - line.count("\\|") for line in lines}
    assert len(columns) == 1
    assert "**" in header
    assert all(line.rstrip().endswith("|") for line in table_lines)
    assert "![Significance against the baseline](scores.png)" in text


def test_record_strings_escaped(tmp_path: Path):
    hostile = "org/<script>alert(1)</script>|x"
    write_record(tmp_path / "results", "SciFact", model_id=hostile, values=np.full(10, 0.2))
    write_record(tmp_path / "results", "SciFact", values=np.full(10, 0.4))
    output = build_report([tmp_path / "results"], tmp_path / "report", ReportOptions(n_resamples=200, baseline="<script>"))

    page = output.files["html"].read_text()
    assert "<script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    markdown = output.files["markdown"].read_text()
    assert "<script>" not in markdown
    assert "&lt;script&gt;alert(1)&lt;/script&gt;\\|x" in markdown


def test_html_is_self_contained(results: Path, tmp_path: Path):
    output = build_report([results], tmp_path / "report", options())
    page = output.files["html"].read_text()
    sources = re.findall(r'(?:src|href)="([^"]+)"', page)
    assert sources
    assert all(source.startswith("data:image/png;base64,") for source in sources)
    assert page.count("<table") == 3


def test_cli_writes_report(results: Path, tmp_path: Path, capsys):
    code = report_cli.main(
        [str(results), "--output", str(tmp_path / "out"), "--resamples", "300", "--baseline", "prefix none",
         "--reference-env", "transformers=5.23.0", "--task-tolerance", "SciFact=0.5"]
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert "0 of 4 drift rows beyond tolerance" in printed
    assert (tmp_path / "out" / "report.html").is_file()


def test_cli_reports_missing_records(tmp_path: Path, capsys):
    assert report_cli.main([str(tmp_path), "--output", str(tmp_path / "out")]) == 1
    assert "no results record found" in capsys.readouterr().err


def write_invalid_records(folder: Path) -> list[Path]:
    """Write files that are valid JSON or text but not valid records; return their paths."""
    folder.mkdir(parents=True, exist_ok=True)
    complete = write_record(folder / "complete", "SciFact", values=np.full(10, 0.2))
    record = json.loads(complete.read_text())
    del record["harness"]["model"]["pooling"]
    complete.unlink()
    per_query_path(complete).unlink()
    files = {
        "Null.json": "null",
        "EmptyHarness.json": json.dumps({"harness": {}}),
        "NoPooling.json": json.dumps(record),
        "Broken.json": "{not json",
    }
    paths = []
    for name, text in files.items():
        (folder / name).write_text(text, encoding="utf-8")
        paths.append(folder / name)
    (folder / "Latin1.json").write_bytes('{"task_name": "Caf\u00e9"}'.encode("latin-1"))
    paths.append(folder / "Latin1.json")
    return paths


def test_load_records_warns_on_invalid(results: Path, caplog):
    invalid = write_invalid_records(results / "invalid")

    with caplog.at_level("WARNING", logger="eval.report.records"):
        frame = report_records.load_records([results])

    assert len(frame) == 8
    assert sorted(frame.attrs["skipped_files"]) == sorted(str(path.resolve()) for path in invalid)
    warnings = [record.getMessage() for record in caplog.records if record.levelname == "WARNING"]
    for path in invalid:
        assert any(str(path.resolve()) in message for message in warnings), path
    assert any("'harness.model.pooling' is missing" in message for message in warnings)
    assert any("Skipped 5 files that are not valid records" in message for message in warnings)


def test_cli_counts_skipped_files(results: Path, tmp_path: Path, capsys):
    write_invalid_records(results / "invalid")

    code = report_cli.main([str(results), "--output", str(tmp_path / "out"), "--resamples", "200", "--baseline", "prefix none"])

    assert code == 0
    assert "(5 files skipped as invalid, see the warnings above)" in capsys.readouterr().out
    markdown = (tmp_path / "out" / "report.md").read_text()
    assert "Skipped 5 files that are not valid records: " in markdown
    assert "Null.json" in markdown


def test_cli_only_invalid_records(tmp_path: Path, capsys):
    write_invalid_records(tmp_path / "results")

    assert report_cli.main([str(tmp_path / "results"), "--output", str(tmp_path / "out")]) == 1
    assert "no results record found" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_cli_output_under_file(results: Path, tmp_path: Path, capsys):
    regular = tmp_path / "README.md"
    regular.write_text("text", encoding="utf-8")

    assert report_cli.main([str(results), "--output", str(regular / "x")]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1
    assert error.startswith("error: invalid --output")
    assert f"{regular} is a file, not a folder" in error


def test_cli_unknown_task_tolerance(results: Path, tmp_path: Path, capsys):
    code = report_cli.main([str(results), "--output", str(tmp_path / "out"), "--task-tolerance", "SciFakt=0.1"])

    assert code == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1
    assert "--task-tolerance names 'SciFakt'" in error
    assert "tasks in the records: Banking77Classification, STSBenchmark, SciFact" in error
    assert not (tmp_path / "out").exists()


def test_significance_shows_record_scores(tmp_path: Path):
    # MTEB rounds the record's score to 6 decimals; the sidecar keeps the unrounded items.
    spread = np.array([-0.1, 0.1, -0.05, 0.05, 0.0, -0.02, 0.02, 0.0, 0.01, -0.01])
    paths = {
        "none": write_record(tmp_path, "Banking77Classification", values=0.8217653 + spread),
        "e5": write_record(tmp_path, "Banking77Classification", prefix_scheme="e5", values=0.9000004 + spread[::-1]),
    }
    for path in paths.values():
        record = json.loads(path.read_text())
        entry = record["scores"]["test"][0]
        entry["main_score"] = entry["accuracy"] = round(entry["main_score"], 6)
        write_json_atomic(path, record)
    frame = report_records.load_records([tmp_path])
    reference = report_records.select_environment(frame, None)
    baseline = tables.select_checkpoint(frame, "prefix none")

    table = tables.significance_table(frame, reference, baseline, n_resamples=200)
    checkpoints, _ = render.checkpoint_display(tables.checkpoint_table(frame, reference))
    significance, _ = render.significance_display(table, 0.95)

    row = table.iloc[0]
    assert row["baseline_score"] == 0.821765
    assert row["candidate_score"] == 0.9
    assert row["delta"] == pytest.approx(0.9 - 0.821765, abs=1e-12)
    checkpoint_cells = checkpoints.set_index("checkpoint")["Banking77Classification"]
    assert checkpoint_cells[baseline] == "0.82176"
    assert significance["baseline"].iloc[0] == checkpoint_cells[baseline]
    assert significance["candidate score"].iloc[0] == checkpoint_cells[row["candidate"]]


def test_cli_rejects_bad_tolerance(capsys):
    with pytest.raises(SystemExit):
        report_cli.main(["--task-tolerance", "SciFact"])
    assert "write TaskName=0.002" in capsys.readouterr().err


def _variant(path: Path, name: str, edit) -> Path:
    """Copy a record to ``name`` beside it after ``edit`` changed its content."""
    record = json.loads(path.read_text())
    edit(record)
    target = path.with_name(name)
    write_json_atomic(target, record)
    return target


def test_classification_normalisation_separate_rows(tmp_path: Path):
    path = write_record(tmp_path, "Banking77Classification", values=np.linspace(0, 1, 50))

    def unnormalized(record):
        record["harness"]["model"]["normalize_classification"] = False
        record["scores"]["test"][0]["main_score"] = 0.25

    _variant(path, "Banking77Classification.clf.json", unnormalized)
    frame = report_records.load_records([tmp_path])

    assert len(frame) == 2
    assert sorted(frame["main_score"].round(6)) == [0.25, 0.5]
    assert frame["checkpoint"].str.endswith("float32, classification unnormalized)").sum() == 1


def test_other_split_labelled_column(tmp_path: Path):
    path = write_record(tmp_path, "SciFact", values=np.linspace(0, 1, 50))

    def train_split(record):
        record["harness"]["task"]["split"] = "train"
        record["scores"] = {"train": [{**record["scores"]["test"][0], "main_score": 0.75}]}

    _variant(path, "SciFact.train.json", train_split)
    frame = report_records.load_records([tmp_path])

    scores = dict(zip(frame["task_name"], frame["main_score"].round(6)))
    assert scores == {"SciFact": 0.5, "SciFact (train)": 0.75}
