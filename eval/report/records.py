"""Read results records into one pandas DataFrame, one row per record.

A row contains the checkpoint key (model id, revision and the settings that
change scores) and the environment key (the recorded package versions, device
and dtype). It also contains the task, its main score, and the path of the
per-item sidecar that the statistics read.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

import pandas as pd

from eval.environment import PACKAGES
from eval.matrix import MANIFEST_NAME
from eval.results import (
    DEFAULT_SPLIT,
    HARNESS_KEY,
    PER_QUERY_SUFFIX,
    main_score,
    per_query_path,
    read_record,
    require_record_keys,
)

logger = logging.getLogger(__name__)

# The software and hardware that may move a score of the same checkpoint. The
# dtype is in both keys: the checkpoint table keeps dtypes apart, and the
# drift table compares them as environments of one checkpoint.
ENVIRONMENT_KEYS = (*PACKAGES, "device", "dtype")
# Keys of a record that the report needs beyond those that read_record checks.
REPORT_RECORD_KEYS = tuple(f"{HARNESS_KEY}.model.{name}" for name in ("prefix_scheme", "max_length", "dtype", "pooling"))


class ReportInputError(ValueError):
    """No usable record was found, or a reference/baseline selection matches nothing; the message names the fix."""


class ReportArgumentError(ReportInputError):
    """An option names something that the loaded records do not have, such as a task of --task-tolerance."""


def find_record_files(paths: Sequence[Path]) -> list[Path]:
    """Expand files and folders into the record files below them (sidecars and matrix manifests excluded), sorted.

    Raises:
        ReportInputError: a path does not exist.
    """
    found: set[Path] = set()
    for path in paths:
        if path.is_file():
            found.add(path.resolve())
        elif path.is_dir():
            found.update(
                candidate.resolve()
                for candidate in path.rglob("*.json")
                if not candidate.name.endswith(PER_QUERY_SUFFIX)
                and not candidate.name.startswith(".")
                and candidate.name != MANIFEST_NAME
            )
        else:
            raise ReportInputError(f"{path} does not exist; pass results folders or record files")
    return sorted(found)


def checkpoint_label(row: Mapping[str, Any], *, with_dtype: bool = True) -> str:
    """Name a checkpoint row: model id, revision and its score-changing settings.

    ``with_dtype=False`` leaves the dtype out; the drift table compares dtypes
    of one checkpoint as environments.
    """
    label = (
        f"{row['model_id']} @ {row['revision']} "
        f"(prefix {row['prefix_scheme']}, {row['pooling']}, len {row['max_length']}"
    )
    if with_dtype:
        label += f", {row['dtype']}"
    if not row["normalize"]:
        label += ", unnormalized"
    if row["normalize_classification"] != row["normalize"]:
        label += ", classification normalized" if row["normalize_classification"] else ", classification unnormalized"
    return label + ")"


def task_label(task_name: str, split: str) -> str:
    """Name a task column: the task, with its split in parentheses when that is not test."""
    return task_name if split == DEFAULT_SPLIT else f"{task_name} ({split})"


def record_row(record: Mapping[str, Any], path: Path) -> dict[str, Any]:
    """Flatten the fields the report needs from one record.

    Raises:
        ValueError: the record lacks a key of :data:`REPORT_RECORD_KEYS` or its
            max_length is not an integer. The message names ``path``.
    """
    require_record_keys(record, path, REPORT_RECORD_KEYS)
    harness = record[HARNESS_KEY]
    model = harness["model"]
    task = harness["task"]
    environment = harness.get("environment") or {}
    packages = environment.get("packages") or {}

    normalize = bool(model.get("normalize", True))
    row: dict[str, Any] = {
        "task_name": task_label(record["task_name"], task["split"]),
        "task_type": task["type"],
        "split": task["split"],
        "main_score_name": task["main_score_name"],
        "main_score": main_score(record),
        "model_id": model["model_id"],
        "revision": model["revision"],
        "prefix_scheme": model["prefix_scheme"],
        "max_length": _max_length(model["max_length"], path),
        "dtype": model["dtype"],
        "pooling": model["pooling"],
        "normalize": normalize,
        "normalize_classification": bool(model.get("normalize_classification", normalize)),
        "device": model.get("device"),
        "date": record.get("date"),
        "data_fingerprint": json.dumps(task.get("fingerprints") or {}, sort_keys=True),
        "record_path": str(path),
        "per_query_path": str(per_query_path(path)),
    }
    for name in PACKAGES:
        row[name] = packages.get(name)
    row["checkpoint"] = checkpoint_label(row)
    row["model_settings"] = checkpoint_label(row, with_dtype=False)
    return row


def _max_length(value: Any, path: Path) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(
            f"{path} is not a valid results record: 'harness.model.max_length' is {value!r}, not a number of tokens"
        )
    return value


def load_records(paths: Sequence[Path]) -> pd.DataFrame:
    """Read every record under ``paths`` into a DataFrame with one row per record.

    Files that are not valid records of this harness (invalid JSON, a record
    without the keys the report needs) are skipped with a WARNING each, and
    their paths are in ``frame.attrs["skipped_files"]``. Matrix manifests
    are not read at all.
    When several records share the checkpoint, environment and task, the
    newest (by MTEB's ``date``) is kept.

    Raises:
        ReportInputError: no record was found.
    """
    rows, skipped = _read_rows(find_record_files(paths))
    if not rows:
        skipped_text = f" ({len(skipped)} files skipped as invalid, see the warnings above)" if skipped else ""
        raise ReportInputError(
            f"no results record found under {', '.join(str(path) for path in paths)}{skipped_text}; "
            "run `python -m eval task=... model=...` first or pass the folder that holds the records"
        )

    frame = pd.DataFrame(rows)
    frame["environment"] = environment_labels(frame)
    before = len(frame)
    frame = (
        frame.sort_values("date", na_position="first")
        .drop_duplicates(subset=["model_settings", "environment", "task_name"], keep="last")
        .sort_values(["checkpoint", "task_name", "environment"])
        .reset_index(drop=True)
    )
    if len(frame) < before:
        logger.info("Kept the newest of duplicate records: %d of %d rows", len(frame), before)
    logger.info(
        "Loaded %d records: %d checkpoints, %d environments, %d tasks",
        len(frame), frame["checkpoint"].nunique(), frame["environment"].nunique(), frame["task_name"].nunique(),
    )
    if skipped:
        logger.warning("Skipped %d files that are not valid records", len(skipped))
    frame.attrs["skipped_files"] = skipped
    return frame


def check_task_tolerances(frame: pd.DataFrame, task_tolerances: Mapping[str, float]) -> None:
    """Check that every task named in ``task_tolerances`` has a record in ``frame``.

    Raises:
        ReportArgumentError: a task has no record. The message lists the tasks that have one.
    """
    available = sorted(str(name) for name in frame["task_name"].unique())
    unknown = sorted(set(task_tolerances) - set(available))
    if unknown:
        raise ReportArgumentError(
            f"--task-tolerance names {', '.join(repr(name) for name in unknown)}, which no loaded record has; "
            f"tasks in the records: {', '.join(available)}"
        )


def _read_rows(files: Sequence[Path]) -> tuple[list[dict[str, Any]], list[str]]:
    """Return the report rows of the valid records among ``files`` and the paths of the others."""
    rows = []
    skipped = []
    for path in files:
        try:
            rows.append(record_row(read_record(path), path))
        except (ValueError, OSError) as error:
            logger.warning("Skipped: %s", error)
            skipped.append(str(path))
    return rows, skipped


def environment_labels(frame: pd.DataFrame) -> pd.Series:
    """Name each row's environment by torch, transformers and every other key that varies across rows."""
    always = ("torch", "transformers")
    varying = [key for key in ENVIRONMENT_KEYS if key not in always and frame[key].astype(str).nunique() > 1]

    def label(row: pd.Series) -> str:
        parts = [f"{key} {row[key]}" for key in (*always, *varying)]
        return ", ".join(parts)

    return frame.apply(label, axis=1)


def select_environment(frame: pd.DataFrame, selector: Optional[str]) -> str:
    """Pick the reference environment label.

    ``selector`` is ``key=value[,key=value...]`` over :data:`ENVIRONMENT_KEYS`,
    for example ``transformers=5.23.0``. A value matches a version that equals
    it or starts with it followed by ``+``, so ``2.13.0`` matches ``2.13.0+cpu``. Without a selector the environment with the most records
    is the reference, ties broken by label order.

    Raises:
        ReportInputError: the selector is malformed, names an unknown key, or matches no environment.
    """
    if not selector:
        counts = frame.groupby("environment").size()
        return str(sorted(counts.index, key=lambda name: (-counts[name], name))[0])

    conditions = _parse_selector(selector)
    matches = frame
    for key, value in conditions.items():
        column = matches[key].astype(str)
        matches = matches[(column == value) | column.str.startswith(value + "+")]
    labels = sorted(matches["environment"].unique())
    if not labels:
        available = "; ".join(sorted(frame["environment"].unique()))
        raise ReportInputError(f"no environment matches --reference-env {selector!r}; environments: {available}")
    if len(labels) > 1:
        logger.warning("--reference-env %r matches %d environments; using %s", selector, len(labels), labels[0])
    return str(labels[0])


def _parse_selector(selector: str) -> dict[str, str]:
    conditions = {}
    for part in selector.split(","):
        key, separator, value = part.partition("=")
        key = key.strip()
        if not separator or not value.strip():
            raise ReportInputError(f"invalid --reference-env part {part!r}; write key=value, e.g. transformers=5.23.0")
        if key not in ENVIRONMENT_KEYS:
            raise ReportInputError(f"unknown environment key {key!r} in --reference-env; valid keys: {', '.join(ENVIRONMENT_KEYS)}")
        conditions[key] = value.strip()
    return conditions


def preferred_records(frame: pd.DataFrame, reference_environment: str) -> pd.DataFrame:
    """Keep one record per (checkpoint, task): the reference environment's, else the newest."""
    ranked = frame.assign(_is_reference=frame["environment"] == reference_environment)
    ranked = ranked.sort_values(["_is_reference", "date"], na_position="first")
    chosen = ranked.drop_duplicates(subset=["checkpoint", "task_name"], keep="last")
    return chosen.drop(columns="_is_reference").sort_values(["checkpoint", "task_name"]).reset_index(drop=True)


def iter_tasks(frame: pd.DataFrame) -> list[tuple[str, str]]:
    """Return (task type, task name) of the records, ordered by type then name."""
    pairs = frame[["task_type", "task_name"]].drop_duplicates().sort_values(["task_type", "task_name"])
    return list(pairs.itertuples(index=False, name=None))
