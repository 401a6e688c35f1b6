"""Score regression checks: compare results records with committed baselines.

``python -m eval.check [BASELINE ...]`` runs each baseline's evaluations (or,
with ``--records DIR``, reads records that already exist), prints a table of
task, model, metric, expected, actual, delta, tolerance and status, and can
write JUnit XML and a Markdown summary for CI systems. ``--rebaseline
--reason TEXT`` writes the new values into the baseline files instead.

Statuses, for a delta = actual - expected:

=============  ==============================================================
OK             within the tolerance (one-sided checks ignore rises)
OK*            beyond the tolerance but within the warning band, or within
               the tolerance while a recorded setting differs from the baseline
FAIL           beyond the warning band
INCOMPARABLE   a fingerprint differs (other data, model revision or weights),
               or there is no record or no value to compare
=============  ==============================================================

The exit code is 0 when every check is OK or OK*, 1 when any check is FAIL or
INCOMPARABLE, and 2 when the arguments or a baseline file are invalid.
"""

from __future__ import annotations

import argparse
import enum
import io
import logging
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Optional, Sequence

from eval.baselines import (
    Baseline,
    BaselineError,
    BaselineRun,
    MetricCheck,
    baseline_files,
    harness_value,
    load_baseline,
    metric_value,
    rebaseline,
    warning_band,
)
from eval.atomic import write_text_atomic
from eval.config import CONFIG_DIR
from eval.results import HARNESS_KEY, read_record, record_file_name, settings_slug

if TYPE_CHECKING:
    from junitparser import JUnitXml

    from eval.config import RunConfig

logger = logging.getLogger(__name__)

DEFAULT_BASELINE_DIR = CONFIG_DIR / "regression"
# Deltas are differences of values rounded to 6 decimals, so a delta that
# equals the tolerance on paper can exceed it by float error.
FLOAT_SLACK = 1e-9
EXIT_OK = 0
EXIT_REGRESSION = 1
EXIT_INVALID = 2


class Status(str, enum.Enum):
    """Outcome of one metric check."""

    OK = "OK"
    WARNING = "OK*"
    FAIL = "FAIL"
    INCOMPARABLE = "INCOMPARABLE"

    @property
    def passed(self) -> bool:
        """Whether this status lets the build pass."""
        return self in (Status.OK, Status.WARNING)


@dataclass
class CheckResult:
    """One row of the report: a metric of a run compared with its baseline."""

    baseline: str
    task: str
    model: str
    metric: str
    expected: float
    actual: Optional[float]
    delta: Optional[float]
    tolerance: float
    warning_band: float
    direction: str
    status: Status
    notes: list[str] = field(default_factory=list)
    record_path: Optional[str] = None


@dataclass
class RunRecord:
    """The record gathered for one baseline run, or why there is none."""

    record: Optional[dict[str, Any]]
    path: Optional[Path]
    problem: Optional[str] = None


@dataclass
class PreparedRun:
    """A baseline run with its composed configuration."""

    baseline: Baseline
    run: BaselineRun
    config: "RunConfig"
    overrides: list[str]


def score_status(delta: float, tolerance: float, band: float, direction: str) -> Status:
    """Classify a delta: OK within the tolerance, OK* within the warning band, else FAIL.

    A one-sided check only counts drops, so any rise is OK.
    """
    excess = abs(delta) if direction == "two-sided" else max(0.0, -delta)
    if excess <= tolerance + FLOAT_SLACK:
        return Status.OK
    if excess <= band + FLOAT_SLACK:
        return Status.WARNING
    return Status.FAIL


def _short(value: Any) -> str:
    # sha256 digests are 64 hex characters; 12 are enough to tell two apart in a report.
    text = repr(value)
    if isinstance(value, str) and len(value) == 64 and all(char in "0123456789abcdef" for char in value):
        text = repr(value[:12] + "…")
    return text


def value_differences(expected: Mapping[str, Any], record: Mapping[str, Any]) -> list[str]:
    """List each harness value of ``record`` that differs from ``expected``, one line per leaf."""
    lines: list[str] = []
    for key, value in expected.items():
        found, actual = harness_value(record, key)
        if not found:
            lines.append(f"{key}: expected {_short(value)}, missing in the record")
            continue
        _diff_leaves(key, value, actual, lines)
    return lines


def _diff_leaves(key: str, expected: Any, actual: Any, lines: list[str]) -> None:
    if isinstance(expected, Mapping) and isinstance(actual, Mapping):
        for name in sorted(set(expected) | set(actual), key=str):
            if name not in actual:
                lines.append(f"{key}.{name}: expected {_short(expected[name])}, missing in the record")
            elif name not in expected:
                lines.append(f"{key}.{name}: not in the baseline, record has {_short(actual[name])}")
            else:
                _diff_leaves(f"{key}.{name}", expected[name], actual[name], lines)
        return
    if expected != actual:
        lines.append(f"{key}: expected {_short(expected)}, got {_short(actual)}")


def compare_run(prepared: PreparedRun, gathered: RunRecord) -> list[CheckResult]:
    """Compare every metric check of one run with its record."""
    baseline, run = prepared.baseline, prepared.run
    results = []
    record = gathered.record
    identity = value_differences(run.fingerprints, record) if record is not None else []
    settings = value_differences(run.settings, record) if record is not None else []

    for check in run.checks:
        result = CheckResult(
            baseline=baseline.name,
            task=run.task,
            model=prepared.config.model.name,
            metric=check.metric,
            expected=check.expected,
            actual=None,
            delta=None,
            tolerance=check.tolerance,
            warning_band=warning_band(check, baseline),
            direction=check.direction,
            status=Status.INCOMPARABLE,
            record_path=str(gathered.path) if gathered.path else None,
        )
        results.append(result)
        if record is None:
            result.notes.append(gathered.problem or "no record")
            continue
        _judge(result, check, record, identity, settings)
    return results


def _judge(
    result: CheckResult, check: MetricCheck, record: Mapping[str, Any], identity: list[str], settings: list[str]
) -> None:
    actual = metric_value(record, check.metric)
    if actual is None:
        split = record[HARNESS_KEY]["task"]["split"]
        available = sorted(
            name
            for entry in record.get("scores", {}).get(split, [])[:1]
            for name, value in entry.items()
            if isinstance(value, (int, float)) and not isinstance(value, bool)
        )
        result.notes.append(f"the record has no value for {check.metric!r}; metrics in it: {', '.join(available)}")
        return

    result.actual = actual
    result.delta = actual - check.expected
    if identity:
        result.notes.append("fingerprints differ, so the data or the model is not what the baseline measured:")
        result.notes.extend(f"  {line}" for line in identity)
        return

    result.status = score_status(result.delta, result.tolerance, result.warning_band, result.direction)
    if result.status is not Status.OK:
        side = "drop" if result.direction == "one-sided" else "change"
        result.notes.append(
            f"{check.metric} moved by {result.delta:+.6f}; allowed {side} {result.tolerance:g}, "
            f"warning band {result.warning_band:g}"
        )
    if settings:
        if result.status is Status.OK:
            result.status = Status.WARNING
        result.notes.append("settings differ from the baseline:")
        result.notes.extend(f"  {line}" for line in settings)


def task_record_name(cfg: "RunConfig") -> str:
    """Return the MTEB task name that a run of ``cfg`` files its record under."""
    if cfg.task.source == "beir" and cfg.task.mteb_name:
        return cfg.task.mteb_name
    return cfg.task.name


def prepare_runs(
    path: Path, baseline: Baseline, extra_overrides: Sequence[str], tasks: Sequence[str]
) -> list[PreparedRun]:
    """Compose each run's Hydra overrides into a config and check it names the run's task.

    Raises:
        BaselineError: the overrides do not compose or run another task.
    """
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    from eval.config import compose_run_config

    prepared = []
    for run in baseline.runs:
        if tasks and run.task not in tasks:
            continue
        overrides = [*run.overrides, *extra_overrides]
        try:
            cfg = compose_run_config(overrides)
        except (HydraException, OmegaConfBaseException, ValueError) as error:
            first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            raise BaselineError(f"{path}: overrides of {run.task} ({' '.join(overrides)}) are invalid: {first_line}") from None
        if task_record_name(cfg) != run.task:
            raise BaselineError(
                f"{path}: run {run.task!r} has overrides that evaluate {task_record_name(cfg)!r}; "
                "make the run's task match its task= override"
            )
        prepared.append(PreparedRun(baseline=baseline, run=run, config=cfg, overrides=overrides))
    return prepared


def find_record(prepared: PreparedRun, folders: Sequence[Path]) -> RunRecord:
    """Pick the record of a baseline run from folders of existing records.

    Candidates are records of the run's task and model config. Only those
    whose settings folder matches the settings that the run's overrides
    (with the --override values) produce are compared, and the newest of them
    by record date is taken. When no candidate matches, the run gets no record
    and a problem that names the settings found and the settings expected.
    """
    cfg = prepared.config
    candidates: list[tuple[Path, dict[str, Any]]] = []
    for folder in folders:
        for path in sorted(folder.rglob(record_file_name(prepared.run.task, cfg.task.split))):
            try:
                record = read_record(path)
            except ValueError as error:
                logger.warning("Skipped: %s", error)
                continue
            harness = record[HARNESS_KEY]
            if harness["task"]["name"] == prepared.run.task and harness["model"].get("config_name") == cfg.model.name:
                candidates.append((path, record))

    if not candidates:
        where = ", ".join(str(folder) for folder in folders)
        return RunRecord(
            record=None,
            path=None,
            problem=f"no record of {prepared.run.task} for model {cfg.model.name} under {where}; "
            f"run `python -m eval {' '.join(prepared.overrides)}` or point --records at its results folder",
        )

    expected_settings = _expected_settings(prepared)
    matching = [item for item in candidates if item[1][HARNESS_KEY].get("settings") == expected_settings]
    if not matching:
        return RunRecord(record=None, path=None, problem=_other_settings_problem(prepared, candidates, expected_settings))
    path, record = max(matching, key=lambda item: item[1].get("date") or 0.0)
    if len(matching) > 1:
        logger.info("%d records match %s; using the newest, %s", len(matching), prepared.run.task, path)
    return RunRecord(record=record, path=path)


def _other_settings_problem(
    prepared: PreparedRun, candidates: Sequence[tuple[Path, Mapping[str, Any]]], expected_settings: str
) -> str:
    """Explain that the records of a run were made with other settings than the run's overrides produce."""
    found = sorted({str(record[HARNESS_KEY].get("settings", "<no settings key>")) for _, record in candidates})
    return (
        f"no record of {prepared.run.task} for model {prepared.config.model.name} has the settings {expected_settings} "
        f"that the run's overrides produce; records found have settings {', '.join(found)}. "
        f"Run `python -m eval {' '.join(prepared.overrides)}`, or pass the changed setting with --override "
        "(for example --override model.pooling=cls) to check a record made with it"
    )


def _expected_settings(prepared: PreparedRun) -> str:
    from eval.config import effective_prefix_scheme

    cfg = prepared.config
    # The baseline's stored max_length and dtype are those its record was made
    # with, which can differ from the config's. An override of either wins.
    overridden = {override.split("=", 1)[0].lstrip("+~") for override in prepared.overrides}
    settings = {key: value for key, value in prepared.run.settings.items() if key not in overridden}
    return settings_slug(
        prefix_scheme=effective_prefix_scheme(cfg),
        pooling=cfg.model.pooling,
        max_length=int(settings.get("model.max_length", cfg.model.max_length)),
        dtype=str(settings.get("model.dtype", cfg.model.dtype)),
        normalize=cfg.model.normalize,
        normalize_classification=cfg.model.normalize_classification,
    )


def run_evaluation(prepared: PreparedRun, results_dir: Path) -> RunRecord:
    """Run one baseline's evaluation afresh and return its record.

    ``overwrite=true`` is passed so that an earlier record of the same
    configuration is never compared in place of a new score.
    """
    from eval.beir_data import DataError
    from eval.checkpoint import CheckpointError
    from eval.config import ConfigError, compose_run_config
    from eval.run import run

    overrides = [*prepared.overrides, f"results_dir={results_dir}", "overwrite=true", "show_progress_bar=false"]
    logger.info("Running %s for baseline %s: %s", prepared.run.task, prepared.baseline.name, " ".join(overrides))
    try:
        outcome = run(compose_run_config(overrides), overrides)
    except (ConfigError, CheckpointError, DataError, FloatingPointError) as error:
        logger.error("The %s run failed: %s", prepared.run.task, error)
        return RunRecord(record=None, path=None, problem=f"the run failed: {error}")
    return RunRecord(record=outcome.record, path=outcome.record_path)


def gather_records(
    prepared_runs: Sequence[PreparedRun], records: Sequence[Path], results_dir: Path
) -> list[RunRecord]:
    """Read records from ``records`` folders when given, else run each evaluation."""
    if records:
        return [find_record(prepared, records) for prepared in prepared_runs]
    return [run_evaluation(prepared, results_dir) for prepared in prepared_runs]


def overall_status(results: Sequence[CheckResult]) -> Status:
    """Return the worst status: INCOMPARABLE, then FAIL, then OK*, then OK."""
    order = [Status.INCOMPARABLE, Status.FAIL, Status.WARNING, Status.OK]
    present = {result.status for result in results}
    return next((status for status in order if status in present), Status.OK)


def exit_code(results: Sequence[CheckResult]) -> int:
    """Return 0 when every check passed (OK or OK*), else 1."""
    return EXIT_OK if all(result.status.passed for result in results) else EXIT_REGRESSION


def status_counts(results: Sequence[CheckResult]) -> str:
    """Summarise the statuses as ``3 OK, 0 OK*, 1 FAIL, 0 INCOMPARABLE (4 checks)``."""
    counts = {status: 0 for status in Status}
    for result in results:
        counts[result.status] += 1
    parts = ", ".join(f"{count} {status.value}" for status, count in counts.items())
    return f"{parts} ({len(results)} checks)"


def _tolerance_text(result: CheckResult) -> str:
    # One-sided checks only bound a drop, shown as the lowest allowed delta.
    if result.direction == "one-sided":
        return f"-{result.tolerance:g}"
    return f"±{result.tolerance:g}"


TABLE_HEADERS = ["task", "model", "metric", "expected", "actual", "delta", "tolerance", "status"]


def table_rows(results: Sequence[CheckResult]) -> list[list[str]]:
    """Return the report's rows as strings, in the order of TABLE_HEADERS."""
    rows = []
    for result in results:
        rows.append(
            [
                result.task,
                result.model,
                result.metric,
                f"{result.expected:.6f}",
                "-" if result.actual is None else f"{result.actual:.6f}",
                "-" if result.delta is None else f"{result.delta:+.6f}",
                _tolerance_text(result),
                result.status.value,
            ]
        )
    return rows


def format_table(results: Sequence[CheckResult]) -> str:
    """Render the plain-text report: the table, the notes of rows that are not OK, the counts."""
    from tabulate import tabulate

    lines = [tabulate(table_rows(results), headers=TABLE_HEADERS, tablefmt="simple", disable_numparse=True)]
    for result in results:
        if result.notes:
            lines.append("")
            lines.append(f"{result.status.value} {result.task} {result.metric} ({result.model}):")
            lines.extend(f"  {note}" for note in result.notes)
            if result.record_path:
                lines.append(f"  record: {result.record_path}")
    lines.append("")
    lines.append(f"{overall_status(results).value}: {status_counts(results)}")
    return "\n".join(lines)


def _markdown_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("*", "\\*")


def format_markdown(results: Sequence[CheckResult]) -> str:
    """Render the report as GitHub-flavoured Markdown, ready for a CI job summary."""
    from tabulate import tabulate

    rows = [[_markdown_cell(cell) for cell in row] for row in table_rows(results)]
    lines = [
        f"## Score regression check: {_markdown_cell(overall_status(results).value)}",
        "",
        _markdown_cell(status_counts(results)),
        "",
        tabulate(rows, headers=TABLE_HEADERS, tablefmt="github", disable_numparse=True),
    ]
    noted = [result for result in results if result.notes]
    if noted:
        lines.extend(["", "### Details", ""])
        for result in noted:
            lines.append(
                f"- **{_markdown_cell(result.status.value)}** {result.task} `{result.metric}` ({result.model})"
            )
            lines.extend(f"  - {_markdown_cell(note.strip())}" for note in result.notes)
            if result.record_path:
                lines.append(f"  - record: `{result.record_path}`")
    return "\n".join(lines) + "\n"


def junit_xml(results: Sequence[CheckResult]) -> "JUnitXml":
    """Build JUnit XML: one test suite per baseline, one test case per task and metric.

    FAIL becomes a ``<failure>``, INCOMPARABLE an ``<error>`` of type
    INCOMPARABLE (the comparison could not be made), and OK* a passing case
    whose ``<system-out>`` contains the warning.
    """
    from junitparser import Error, Failure, JUnitXml, TestCase, TestSuite

    suites: dict[str, TestSuite] = {}
    for result in results:
        suite = suites.get(result.baseline)
        if suite is None:
            suite = suites[result.baseline] = TestSuite(f"regression.{result.baseline}")
        case = TestCase(result.metric, classname=f"regression.{result.baseline}.{result.task}", time=0.0)
        summary = (
            f"{result.task} {result.metric}: expected {result.expected:.6f}, "
            + ("no actual value" if result.actual is None else f"actual {result.actual:.6f} (delta {result.delta:+.6f})")
            + f", tolerance {_tolerance_text(result)}, status {result.status.value}"
        )
        details = "\n".join([summary, *result.notes] + ([f"record: {result.record_path}"] if result.record_path else []))
        if result.status is Status.FAIL:
            failure = Failure(summary, type_="FAIL")
            failure.text = details
            case.result = [failure]
        elif result.status is Status.INCOMPARABLE:
            error = Error(summary, type_="INCOMPARABLE")
            error.text = details
            case.result = [error]
        else:
            case.system_out = details
        suite.add_testcase(case)

    document = JUnitXml("score-regression")
    for suite in suites.values():
        suite.update_statistics()
        document.add_testsuite(suite)
    document.update_statistics()
    return document


def write_junit(path: Path, results: Sequence[CheckResult]) -> None:
    """Write the JUnit XML report atomically."""
    buffer = io.BytesIO()
    junit_xml(results).write(buffer, pretty=True)
    write_text_atomic(path, buffer.getvalue().decode("utf-8"))


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser of ``python -m eval.check``."""
    parser = argparse.ArgumentParser(
        prog="python -m eval.check",
        description="Compare scores with committed baselines; exit 1 on FAIL or INCOMPARABLE, 2 on invalid input.",
    )

    parser.add_argument(
        "baselines",
        nargs="*",
        type=Path,
        help=f"baseline files or folders of them (default: {DEFAULT_BASELINE_DIR})",
    )
    parser.add_argument(
        "--records",
        action="append",
        type=Path,
        default=[],
        metavar="DIR",
        help="read existing records below DIR instead of running the evaluations (repeatable)",
    )
    parser.add_argument(
        "--override",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="Hydra override added to every run, e.g. data_dir=/data or model.device=cuda (repeatable)",
    )
    parser.add_argument(
        "--task",
        action="append",
        default=[],
        metavar="NAME",
        help="check only the runs of this MTEB task name, e.g. STSBenchmark (repeatable)",
    )
    parser.add_argument(
        "--results-dir",
        type=Path,
        default=Path("results"),
        help="folder for the records of runs made by the check (default: results)",
    )

    parser.add_argument("--junit", type=Path, metavar="FILE", help="write a JUnit XML report to FILE")
    parser.add_argument("--markdown", type=Path, metavar="FILE", help="write a Markdown summary to FILE")

    parser.add_argument(
        "--rebaseline",
        action="store_true",
        help="write the records' values, fingerprints and settings into the baseline files instead of checking",
    )
    parser.add_argument("--reason", default="", help="why the baseline changes; required with --rebaseline")
    return parser


def check(
    baseline_paths: Sequence[Path],
    *,
    records: Sequence[Path] = (),
    overrides: Sequence[str] = (),
    tasks: Sequence[str] = (),
    results_dir: Path = Path("results"),
) -> list[CheckResult]:
    """Check every run of the given baseline files and return one result per metric check.

    Raises:
        BaselineError: a baseline file or its overrides are invalid, or
            ``tasks`` names a task that no baseline runs.
    """
    loaded = _load_all(baseline_paths, overrides, tasks)
    results: list[CheckResult] = []
    for _, prepared_runs in loaded:
        gathered = gather_records(prepared_runs, records, results_dir.resolve())
        for prepared, run_record in zip(prepared_runs, gathered):
            results.extend(compare_run(prepared, run_record))
    return results


def _load_all(
    baseline_paths: Sequence[Path], overrides: Sequence[str], tasks: Sequence[str]
) -> list[tuple[Path, list[PreparedRun]]]:
    loaded = []
    for path in baseline_files(list(baseline_paths) or [DEFAULT_BASELINE_DIR]):
        baseline = load_baseline(path)
        loaded.append((path, prepare_runs(path, baseline, overrides, tasks)))

    known = {prepared.run.task for _, runs in loaded for prepared in runs}
    unknown = sorted(set(tasks) - known)
    if unknown:
        raise BaselineError(f"no baseline runs task {', '.join(unknown)}; check the --task names")
    return loaded


def rebaseline_files(
    baseline_paths: Sequence[Path],
    *,
    reason: str,
    records: Sequence[Path] = (),
    overrides: Sequence[str] = (),
    tasks: Sequence[str] = (),
    results_dir: Path = Path("results"),
) -> dict[Path, list[dict[str, Any]]]:
    """Take new expected values from records (read or run) and write them into the baseline files.

    Raises:
        BaselineError: the reason is empty, a file is invalid, a run has no
            record, or a record has other settings than the run's own overrides produce.
    """
    if not reason.strip():
        raise BaselineError("re-baselining needs a reason; pass --reason 'why the scores moved'")
    changes: dict[Path, list[dict[str, Any]]] = {}
    for path, prepared_runs in _load_all(baseline_paths, overrides, tasks):
        own_settings = [_own_settings(path, prepared) for prepared in prepared_runs]
        for prepared, settings in zip(prepared_runs, own_settings):
            _check_override_settings(path, prepared, settings)
        gathered = gather_records(prepared_runs, records, results_dir.resolve())
        missing = [prepared.run.task for prepared, item in zip(prepared_runs, gathered) if item.record is None]
        if missing:
            problems = "; ".join(item.problem or "" for item in gathered if item.record is None)
            raise BaselineError(f"cannot re-baseline {path}: no record for {', '.join(missing)} ({problems})")
        for prepared, item, settings in zip(prepared_runs, gathered, own_settings):
            _check_record_settings(path, prepared, item, settings)
        by_task = {prepared.run.task: item.record for prepared, item in zip(prepared_runs, gathered) if item.record}
        changes[path] = rebaseline(path, by_task, reason=reason)
    return changes


def _own_settings(path: Path, prepared: PreparedRun) -> str:
    """Return the settings folder name that the baseline run's own overrides produce, without --override values.

    Raises:
        BaselineError: the run's overrides do not compose on their own.
    """
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    from eval.config import compose_run_config

    own_overrides = list(prepared.run.overrides)
    if prepared.overrides == own_overrides:
        return _expected_settings(prepared)
    try:
        own_config = compose_run_config(own_overrides)
    except (HydraException, OmegaConfBaseException, ValueError) as error:
        raise BaselineError(
            f"cannot re-baseline {path}: the overrides of {prepared.run.task} ({' '.join(own_overrides)}) "
            f"do not compose without the --override values: {error}"
        ) from None
    own = PreparedRun(baseline=prepared.baseline, run=prepared.run, config=own_config, overrides=own_overrides)
    return _expected_settings(own)


def _check_override_settings(path: Path, prepared: PreparedRun, own_settings: str) -> None:
    """Reject --override values that change a run's settings, before any evaluation runs.

    Raises:
        BaselineError: the settings with the --override values differ from ``own_settings``.
    """
    with_overrides = _expected_settings(prepared)
    if with_overrides != own_settings:
        raise BaselineError(
            f"cannot re-baseline {path}: the --override values change the settings of {prepared.run.task} "
            f"from {own_settings} to {with_overrides}, which the run's overrides ({' '.join(prepared.run.overrides)}) "
            "would not reproduce in the next check; add the setting to the run's overrides in the baseline file "
            "instead of passing it with --override"
        )


def _check_record_settings(path: Path, prepared: PreparedRun, gathered: RunRecord, own_settings: str) -> None:
    """Check that a record's settings are those that the baseline run's own overrides produce.

    A record with other settings would write settings into the baseline that
    the next check, which runs only the baseline's overrides, does not reproduce.

    Raises:
        BaselineError: the settings differ; the message names both and the fix.
    """
    found = gathered.record[HARNESS_KEY].get("settings") if gathered.record is not None else None
    if found != own_settings:
        raise BaselineError(
            f"cannot re-baseline {path}: the record of {prepared.run.task} ({gathered.path}) has settings {found}, "
            f"but the run's overrides ({' '.join(prepared.run.overrides)}) produce {own_settings}, so the next check "
            "would not reproduce it; re-baseline from a record with those settings, or change the run's overrides "
            "and settings in the baseline file first"
        )


def _format_changes(changes: Mapping[Path, list[dict[str, Any]]]) -> str:
    lines = []
    for path, items in changes.items():
        lines.append(f"{path}: {len(items)} values changed")
        lines.extend(f"  {item['task']} {item['key']}: {_short(item['old'])} -> {_short(item['new'])}" for item in items)
    return "\n".join(lines)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point of ``python -m eval.check``; returns the exit code."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    arguments = build_parser().parse_args(argv)
    if arguments.reason and not arguments.rebaseline:
        print("error: --reason only applies with --rebaseline", file=sys.stderr)
        return EXIT_INVALID
    not_folders = [str(folder) for folder in arguments.records if not folder.is_dir()]
    if not_folders:
        print(
            f"error: --records {', '.join(not_folders)} is not a folder; pass the results folder that contains "
            "the records (for example --records results)",
            file=sys.stderr,
        )
        return EXIT_INVALID

    try:
        if arguments.rebaseline:
            changes = rebaseline_files(
                arguments.baselines,
                reason=arguments.reason,
                records=arguments.records,
                overrides=arguments.override,
                tasks=arguments.task,
                results_dir=arguments.results_dir,
            )
            print(_format_changes(changes))
            return EXIT_OK
        results = check(
            arguments.baselines,
            records=arguments.records,
            overrides=arguments.override,
            tasks=arguments.task,
            results_dir=arguments.results_dir,
        )
    except BaselineError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_INVALID

    if arguments.junit:
        write_junit(arguments.junit, results)
    if arguments.markdown:
        write_text_atomic(arguments.markdown, format_markdown(results))
    print(format_table(results))
    return exit_code(results)


if __name__ == "__main__":
    raise SystemExit(main())
