"""Baseline files for score regression checks: schema, loading and re-baselining.

A baseline file (YAML, under ``configs/regression/``) names one checkpoint and
lists the runs to check. Each run carries the Hydra overrides that produce it,
the fingerprints that must match the record, the settings it was measured
with, and the metrics to compare with their expected value and tolerance.
Re-baselining rewrites the expected values, fingerprints and settings from new
records and appends an entry to the file's change log. The file is read and
written with ruamel.yaml's round-trip mode, so comments that justify the
tolerances survive a rewrite.
"""

from __future__ import annotations

import datetime
import io
import logging
from pathlib import Path
from typing import Any, Literal, Mapping, Optional

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from eval.atomic import write_text_atomic
from eval.results import HARNESS_KEY

logger = logging.getLogger(__name__)

DEFAULT_WARNING_FACTOR = 1.5
# Top-level sections of a record's harness part that fingerprints and settings may name.
HARNESS_SECTIONS = ("task", "model", "encoding", "environment")


class BaselineError(ValueError):
    """A baseline file is missing or invalid, or cannot be rewritten; the message names the file."""


class MetricCheck(BaseModel):
    """One metric of one run: the expected value and how far the actual value may move."""

    model_config = ConfigDict(extra="forbid")

    metric: str = Field(min_length=1)
    expected: float
    tolerance: float = Field(ge=0)
    # Absolute bound of the warning band; None means warning_factor times the tolerance.
    warning_band: Optional[float] = Field(default=None, ge=0)
    direction: Literal["two-sided", "one-sided"] = "two-sided"
    reason: str = ""

    @model_validator(mode="after")
    def _band_covers_tolerance(self) -> "MetricCheck":
        if self.warning_band is not None and self.warning_band < self.tolerance:
            raise ValueError(
                f"warning_band {self.warning_band} is smaller than tolerance {self.tolerance}; "
                "set it to at least the tolerance or remove it to use warning_factor"
            )
        return self


class BaselineRun(BaseModel):
    """One evaluation (a task with a model configuration) and the checks on its record."""

    model_config = ConfigDict(extra="forbid")

    task: str = Field(min_length=1)
    overrides: list[str] = Field(min_length=1)
    fingerprints: dict[str, Any] = Field(default_factory=dict)
    settings: dict[str, Any] = Field(default_factory=dict)
    checks: list[MetricCheck] = Field(min_length=1)

    @field_validator("fingerprints", "settings")
    @classmethod
    def _harness_paths(cls, value: dict[str, Any]) -> dict[str, Any]:
        for key in value:
            section = key.split(".", 1)[0]
            if section not in HARNESS_SECTIONS or "." not in key:
                raise ValueError(
                    f"key {key!r} is not a path into the record's harness section; "
                    f"write it as <section>.<field> with section one of {', '.join(HARNESS_SECTIONS)}"
                )
        return value

    @field_validator("overrides")
    @classmethod
    def _no_output_overrides(cls, value: list[str]) -> list[str]:
        # The check sets these itself, so a baseline that fixed them would fight it.
        for override in value:
            key = override.lstrip("+~").split("=", 1)[0]
            if key in {"results_dir", "overwrite", "show_progress_bar", "data_dir"}:
                raise ValueError(
                    f"override {override!r} belongs to the machine, not the baseline; "
                    "remove it and pass it to `python -m eval.check --override` instead"
                )
        return value


class Baseline(BaseModel):
    """A parsed baseline file."""

    model_config = ConfigDict(extra="forbid")

    schema_version: Literal[1]
    name: str = Field(min_length=1)
    description: str = ""
    warning_factor: float = Field(default=DEFAULT_WARNING_FACTOR, ge=1.0)
    runs: list[BaselineRun] = Field(min_length=1)
    changelog: list[dict[str, Any]] = Field(default_factory=list)

    @model_validator(mode="after")
    def _unique_tasks(self) -> "Baseline":
        tasks = [run.task for run in self.runs]
        duplicates = sorted({task for task in tasks if tasks.count(task) > 1})
        if duplicates:
            raise ValueError(f"tasks {', '.join(duplicates)} appear in more than one run; keep one run per task")
        return self


def warning_band(check: MetricCheck, baseline: Baseline) -> float:
    """Return the absolute warning bound of ``check``: its own, or the file's factor times the tolerance."""
    if check.warning_band is not None:
        return check.warning_band
    return baseline.warning_factor * check.tolerance


def _yaml() -> Any:
    from ruamel.yaml import YAML

    yaml = YAML(typ="rt")
    yaml.preserve_quotes = True
    yaml.width = 4096
    yaml.indent(mapping=2, sequence=4, offset=2)
    return yaml


def _plain(value: Any) -> Any:
    """Convert ruamel's round-trip containers and scalars into plain Python values."""
    if isinstance(value, Mapping):
        return {str(key): _plain(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_plain(item) for item in value]
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    if isinstance(value, (datetime.date, datetime.datetime)):
        return value.isoformat()
    return str(value)


def _format_validation_error(path: Path, error: ValidationError) -> str:
    problems = []
    for detail in error.errors():
        location = ".".join(str(part) for part in detail["loc"]) or "(top level)"
        problems.append(f"{location}: {detail['msg']}")
    return f"invalid baseline file {path}: " + "; ".join(problems)


def load_baseline(path: Path) -> Baseline:
    """Read and validate one baseline file.

    Raises:
        BaselineError: the file is missing, is not YAML, or does not match the schema.
    """
    from ruamel.yaml.error import YAMLError

    if not path.is_file():
        raise BaselineError(f"baseline file {path} not found; list the files under configs/regression/")
    try:
        document = _yaml().load(path.read_text(encoding="utf-8"))
    except YAMLError as error:
        raise BaselineError(f"baseline file {path} is not valid YAML: {error}") from error
    if not isinstance(document, Mapping):
        raise BaselineError(f"baseline file {path} must contain a mapping with schema_version, name and runs")

    try:
        return Baseline.model_validate(_plain(document))
    except ValidationError as error:
        raise BaselineError(_format_validation_error(path, error)) from None


def baseline_files(paths: list[Path]) -> list[Path]:
    """Expand folders into the ``*.yaml`` files they contain, keeping files as given.

    Raises:
        BaselineError: a path does not exist or a folder contains no baseline file.
    """
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            found = sorted(path.glob("*.yaml")) + sorted(path.glob("*.yml"))
            if not found:
                raise BaselineError(f"folder {path} contains no baseline file (*.yaml)")
            files.extend(found)
        elif path.is_file():
            files.append(path)
        else:
            raise BaselineError(f"baseline path {path} not found; pass a baseline file or a folder of them")
    return files


def harness_value(record: Mapping[str, Any], dotted_key: str) -> tuple[bool, Any]:
    """Look up ``task.fingerprints`` style paths in a record's harness section.

    Returns ``(found, value)``, so that a stored ``None`` differs from a missing key.
    """
    node: Any = record.get(HARNESS_KEY, {})
    for part in dotted_key.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return False, None
        node = node[part]
    return True, node


def metric_value(record: Mapping[str, Any], metric: str) -> Optional[float]:
    """Return ``metric`` of the record's evaluated split, averaged over subsets as MTEB does.

    Returns None when an entry lacks the metric or stores None for it.
    """
    split = record[HARNESS_KEY]["task"]["split"]
    entries = record.get("scores", {}).get(split, [])
    values = [entry.get(metric) for entry in entries]
    if not values or any(not isinstance(value, (int, float)) or isinstance(value, bool) for value in values):
        return None
    return sum(values) / len(values)


def rebaseline(
    path: Path,
    records: Mapping[str, Mapping[str, Any]],
    *,
    reason: str,
    now: Optional[datetime.datetime] = None,
) -> list[dict[str, Any]]:
    """Take expected values, fingerprints and settings from ``records`` and log the change.

    ``records`` maps a run's task name to the record that replaces its
    baseline; runs without a record keep their values. Tolerances, directions
    and comments are left as they are. Returns the changes written to the new
    change log entry (one per value that changed).

    Raises:
        BaselineError: the reason is empty, a record lacks a checked metric,
            or the file is invalid.
    """
    if not reason.strip():
        raise BaselineError(f"re-baselining {path} needs a reason; pass --reason 'why the scores moved'")
    load_baseline(path)
    yaml = _yaml()
    document = yaml.load(path.read_text(encoding="utf-8"))

    changes: list[dict[str, Any]] = []
    for run in document["runs"]:
        task = str(run["task"])
        record = records.get(task)
        if record is None:
            continue
        changes.extend(_update_run(path, run, record))

    entry = _changelog_entry(reason, records, changes, now)
    if "changelog" not in document or document["changelog"] is None:
        document["changelog"] = []
    document["changelog"].append(entry)

    buffer = io.StringIO()
    yaml.dump(document, buffer)
    write_text_atomic(path, buffer.getvalue())
    logger.info("Re-baselined %s: %d values changed", path, len(changes))
    return changes


def _update_run(path: Path, run: Any, record: Mapping[str, Any]) -> list[dict[str, Any]]:
    task = str(run["task"])
    changes: list[dict[str, Any]] = []

    for check in run["checks"]:
        metric = str(check["metric"])
        actual = metric_value(record, metric)
        if actual is None:
            raise BaselineError(
                f"cannot re-baseline {path}: the {task} record has no value for metric {metric!r}; "
                "fix the metric name or remove the check"
            )
        old = float(check["expected"])
        if actual != old:
            check["expected"] = actual
            changes.append({"task": task, "key": metric, "old": old, "new": actual})

    for section in ("fingerprints", "settings"):
        values = run.get(section) or {}
        for key in list(values):
            found, new = harness_value(record, key)
            if not found:
                raise BaselineError(
                    f"cannot re-baseline {path}: the {task} record has no harness value {key!r}; "
                    f"remove it from {section} or use a record written by this harness"
                )
            old = _plain(values[key])
            if old != new:
                values[key] = new
                changes.append({"task": task, "key": key, "old": old, "new": new})
    return changes


def _changelog_entry(
    reason: str,
    records: Mapping[str, Mapping[str, Any]],
    changes: list[dict[str, Any]],
    now: Optional[datetime.datetime],
) -> dict[str, Any]:
    moment = now or datetime.datetime.now(datetime.timezone.utc)
    harnesses = [record.get(HARNESS_KEY, {}) for record in records.values()]
    commits = sorted({str(harness.get("git", {}).get("commit")) for harness in harnesses})
    first = harnesses[0] if harnesses else {}
    return {
        "date": moment.replace(microsecond=0).isoformat(),
        "reason": reason.strip(),
        "tasks": sorted(records),
        # Records of one check run share a commit; a list means they came from several.
        "commit": commits[0] if len(commits) == 1 else commits,
        "dirty": any(bool(harness.get("git", {}).get("dirty")) for harness in harnesses),
        "packages": dict(first.get("environment", {}).get("packages", {})),
        "changes": changes,
    }
