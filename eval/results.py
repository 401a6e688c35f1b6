"""The results record: the contract between running and reporting.

A record is one JSON file per (model, settings, task). Its top-level fields
are those of MTEB's ``TaskResult`` (so ``mteb.TaskResult.from_disk`` reads
it); everything this harness adds sits under the ``"harness"`` key. Per-query
scores of the main metric go to a sidecar file beside it.

Layout: ``<results_dir>/<model id>/<revision>/<settings>/<TaskName>.json``
and ``<TaskName>.per_query.json``.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

from eval.atomic import write_text_atomic

SCHEMA_VERSION = 1
HARNESS_KEY = "harness"
PER_QUERY_SUFFIX = ".per_query.json"
# The split that BEIR's loader and most MTEB tasks score; records of other splits name theirs.
DEFAULT_SPLIT = "test"
_UNSAFE_PATH_CHARACTERS = re.compile(r"[^A-Za-z0-9._=+-]+")


def path_component(value: str) -> str:
    """Turn a model id, revision or task name into one safe folder or file name.

    Slashes become ``__`` as in MTEB's result folders, and other characters
    outside ``[A-Za-z0-9._=+-]`` become ``_``. Leading dots are dropped, so no
    component can be ``..`` or hidden.
    """
    safe = _UNSAFE_PATH_CHARACTERS.sub("_", value.replace("/", "__")).lstrip(".")
    return safe or "_"


def settings_slug(
    *,
    prefix_scheme: str,
    pooling: str,
    max_length: int,
    dtype: str,
    normalize: bool,
    normalize_classification: Optional[bool] = None,
) -> str:
    """Name the settings that change scores, so differently configured runs never share a record.

    ``normalize_classification`` is named only where it differs from
    ``normalize``, so the folders of the usual settings keep their names.
    """
    slug = f"prefix-{prefix_scheme}_{pooling}_len{max_length}_{dtype}"
    if not normalize:
        slug += "_unnormalized"
    if normalize_classification is not None and normalize_classification != normalize:
        slug += "_clf-normalized" if normalize_classification else "_clf-unnormalized"
    return path_component(slug)


def record_file_name(task_name: str, split: Optional[str] = None) -> str:
    """Name a task's record file: ``<Task>.json``, or ``<Task>.<split>.json`` for a split other than test.

    BEIR and most MTEB tasks are scored on ``test``. A run that chooses
    another split with ``task.split`` gets its own record beside it.
    """
    if split is None or split == DEFAULT_SPLIT:
        return f"{path_component(task_name)}.json"
    return f"{path_component(task_name)}.{path_component(split)}.json"


def record_path(
    results_dir: Path, *, model_id: str, revision: str, settings: str, task_name: str, split: Optional[str] = None
) -> Path:
    """Return where the record of one (model, settings, task, split) is written."""
    folder = results_dir / path_component(model_id) / path_component(revision) / path_component(settings)
    return folder / record_file_name(task_name, split)


def per_query_path(record: Path) -> Path:
    """Return the path of the sidecar file with per-query scores for ``record``."""
    return record.with_name(record.name.removesuffix(".json") + PER_QUERY_SUFFIX)


def write_json_atomic(path: Path, payload: Any) -> None:
    """Write JSON to ``path`` through a temporary file and a rename, so readers never see half a file.

    Raises:
        ValueError: the payload contains NaN or infinity, which JSON cannot carry;
            nothing is written then.
    """
    text = json.dumps(payload, indent=2, ensure_ascii=False, allow_nan=False) + "\n"
    write_text_atomic(path, text)


def build_record(task_result: Any, harness: Mapping[str, Any]) -> dict[str, Any]:
    """Combine an MTEB ``TaskResult`` with the harness's metadata into one JSON-ready dict.

    The MTEB part is serialised as ``TaskResult.to_disk`` does it (date as a
    Unix timestamp, scores rounded to 6 decimals by MTEB), with NaN
    evaluation time or CO2 written as null.
    """
    record = task_result.model_dump(mode="json")
    record["date"] = task_result.date.timestamp() if task_result.date else None
    task_result._round_scores(record["scores"], 6)
    # MTEB's combined result of an aggregate task (CQADupStack) sets an unknown
    # evaluation time or CO2 figure to NaN, which JSON cannot carry.
    for key in ("evaluation_time", "kg_co2_emissions"):
        if isinstance(record.get(key), float) and math.isnan(record[key]):
            record[key] = None
    record[HARNESS_KEY] = {"schema_version": SCHEMA_VERSION, **harness}
    return record


# Keys that every reader of a record uses, as dotted paths from the top level.
REQUIRED_RECORD_KEYS = (
    "task_name",
    "scores",
    f"{HARNESS_KEY}.task.name",
    f"{HARNESS_KEY}.task.type",
    f"{HARNESS_KEY}.task.split",
    f"{HARNESS_KEY}.task.main_score_name",
    f"{HARNESS_KEY}.model.model_id",
    f"{HARNESS_KEY}.model.revision",
)
_JSON_TYPE_NAMES = {type(None): "null", bool: "a boolean", int: "a number", float: "a number", str: "a string", list: "an array"}
_INVALID_RECORD_FIX = "re-run its evaluation with overwrite=true or move the file out of the results folder"


def read_record(path: Path) -> dict[str, Any]:
    """Read a record written by :func:`write_json_atomic` and check the keys that readers use.

    Raises:
        ValueError: the file is not UTF-8 JSON, is not a JSON object, has no
            harness section, lacks a key of :data:`REQUIRED_RECORD_KEYS`, or has
            no main score for its split. The message names the file and the key.
    """
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"{path} is not a valid results record: {error}; {_INVALID_RECORD_FIX}") from error
    if not isinstance(record, dict):
        raise ValueError(
            f"{path} is not a valid results record: it contains {_json_type(record)}, not a JSON object; {_INVALID_RECORD_FIX}"
        )
    if HARNESS_KEY not in record:
        raise ValueError(f"{path} has no {HARNESS_KEY!r} section, so this harness did not write it; {_INVALID_RECORD_FIX}")
    require_record_keys(record, path, REQUIRED_RECORD_KEYS)
    _require_main_scores(record, path)
    return record


def require_record_keys(record: Mapping[str, Any], path: Path, keys: Sequence[str]) -> None:
    """Check that ``record`` has every dotted key of ``keys``, each parent being a JSON object.

    Raises:
        ValueError: a key is missing or a parent is not an object. The message names ``path`` and the key.
    """
    for key in keys:
        node: Any = record
        parts = key.split(".")
        for depth, part in enumerate(parts):
            if not isinstance(node, Mapping):
                parent = ".".join(parts[:depth])
                raise ValueError(
                    f"{path} is not a valid results record: {parent!r} is {_json_type(node)}, not a JSON object; "
                    f"{_INVALID_RECORD_FIX}"
                )
            if part not in node:
                raise ValueError(f"{path} is not a valid results record: key {key!r} is missing; {_INVALID_RECORD_FIX}")
            node = node[part]


def _json_type(value: Any) -> str:
    return _JSON_TYPE_NAMES.get(type(value), type(value).__name__)


def _require_main_scores(record: Mapping[str, Any], path: Path) -> None:
    split = record[HARNESS_KEY]["task"]["split"]
    if not isinstance(split, str):
        raise ValueError(
            f"{path} is not a valid results record: 'harness.task.split' is {split!r}, not a split name; {_INVALID_RECORD_FIX}"
        )
    scores = record["scores"]
    entries = scores.get(split) if isinstance(scores, Mapping) else None
    valid = (
        isinstance(entries, list)
        and len(entries) > 0
        and all(isinstance(entry, Mapping) and _is_number(entry.get("main_score")) for entry in entries)
    )
    if not valid:
        raise ValueError(
            f"{path} is not a valid results record: 'scores.{split}' is not a list of entries with a numeric "
            f"'main_score'; {_INVALID_RECORD_FIX}"
        )


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def main_score(record: Mapping[str, Any]) -> float:
    """Return the main score of a record's evaluated split, averaged over subsets as MTEB does."""
    split = record[HARNESS_KEY]["task"]["split"]
    entries = record["scores"][split]
    return sum(entry["main_score"] for entry in entries) / len(entries)


SUMMARY_METRICS = {
    "Retrieval": ("ndcg_at_10", "map_at_10", "mrr_at_10", "recall_at_10", "recall_at_100", "precision_at_10"),
    "STS": ("cosine_spearman", "cosine_pearson", "manhattan_spearman", "euclidean_spearman"),
    "Classification": ("accuracy", "f1", "f1_weighted"),
}


def format_summary(record: Mapping[str, Any], path: Path, *, skipped: bool = False) -> str:
    """Render the few lines printed at the end of a run: task, model, main score, key metrics, record path."""
    harness = record[HARNESS_KEY]
    task = harness["task"]
    model = harness["model"]
    split = task["split"]
    entry = record["scores"][split][0]

    lines = [
        f"{task['name']} ({split}) with {model['model_id']} @ {model['revision']}",
        f"  settings: prefix scheme {model['prefix_scheme']}, {model['pooling']} pooling, "
        f"max_length {model['max_length']}, {model['dtype']} on {model['device']}",
        f"  main score {task['main_score_name']} = {main_score(record):.5f}",
    ]
    metrics = [name for name in SUMMARY_METRICS.get(task["type"], ()) if name in entry and name != task["main_score_name"]]
    if metrics:
        lines.append("  " + "  ".join(f"{name} {entry[name]:.5f}" for name in metrics))
    status = "existing record (pass overwrite=true to re-run)" if skipped else "record"
    lines.append(f"  {status}: {path}")
    return "\n".join(lines)
