"""The report's tables as pandas DataFrames: checkpoints, significance and environment drift."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Mapping, Optional

import numpy as np
import pandas as pd

from eval import stats
from eval.environment import PACKAGES
from eval.report.records import ReportInputError, iter_tasks, preferred_records

logger = logging.getLogger(__name__)

OVERALL_AVERAGE = "Average"
DEFAULT_TOLERANCE = 0.001


def type_average_column(task_type: str) -> str:
    """Return the column name of a task type's average."""
    return f"Average {task_type}"


def checkpoint_table(frame: pd.DataFrame, reference_environment: str) -> pd.DataFrame:
    """Build checkpoints (rows) x tasks (columns) of main scores with MTEB-style averages.

    A task type gets an average column when it has two or more tasks (with
    one it would repeat that task's column), and ``Average`` covers all
    tasks. As MTEB and C-MTEB do, a row gets an average only when it has a
    score for every task of the group, so rows with missing tasks are never
    ranked on a partial mean.
    """
    chosen = preferred_records(frame, reference_environment)
    tasks = iter_tasks(chosen)
    columns = [name for _, name in tasks]
    table = chosen.pivot(index="checkpoint", columns="task_name", values="main_score").reindex(columns=columns)

    by_type: dict[str, list[str]] = {}
    for task_type, name in tasks:
        by_type.setdefault(task_type, []).append(name)
    for task_type, names in by_type.items():
        if len(names) > 1:
            table[type_average_column(task_type)] = table[names].mean(axis=1, skipna=False)
    table[OVERALL_AVERAGE] = table[columns].mean(axis=1, skipna=False)

    table.index.name = "checkpoint"
    table.columns.name = None
    return table


def _item_scores(path: str, cache: dict[str, Any]) -> stats.ItemScores:
    if path not in cache:
        cache[path] = stats.read_item_scores(Path(path))
    return cache[path]


def select_checkpoint(frame: pd.DataFrame, selector: Optional[str]) -> str:
    """Return the checkpoint label that contains ``selector``, or the first label when None.

    Raises:
        ReportInputError: the selector matches no checkpoint or more than one.
    """
    labels = sorted(frame["checkpoint"].unique())
    if not selector:
        return labels[0]
    matches = [label for label in labels if selector in label]
    if len(matches) == 1:
        return matches[0]
    if not matches:
        raise ReportInputError(f"--baseline {selector!r} matches no checkpoint; checkpoints: {'; '.join(labels)}")
    raise ReportInputError(f"--baseline {selector!r} matches {len(matches)} checkpoints: {'; '.join(matches)}; use a longer part of one label")


def significance_table(
    frame: pd.DataFrame,
    reference_environment: str,
    baseline: str,
    *,
    n_resamples: int = 10_000,
    seed: int = 0,
    confidence: float = 0.95,
    ci_method: str = "BCa",
    alpha: float = 0.05,
) -> pd.DataFrame:
    """Compare every checkpoint with ``baseline`` on each shared task, Holm-corrected across tasks.

    Each candidate's p-values form one family: Holm's correction runs over
    the tasks of that candidate-versus-baseline comparison. A task whose two
    records come from different data, or lack per-item scores, gets a row
    with the reason in ``note`` and no statistics.
    """
    chosen = preferred_records(frame, reference_environment)
    cache: dict[str, Any] = {}
    base_rows = chosen[chosen["checkpoint"] == baseline].set_index("task_name")
    rows = []
    for candidate in sorted(set(chosen["checkpoint"]) - {baseline}):
        candidate_rows = chosen[chosen["checkpoint"] == candidate].set_index("task_name")
        family = []
        for task_name in sorted(set(base_rows.index) & set(candidate_rows.index)):
            base = base_rows.loc[task_name]
            cand = candidate_rows.loc[task_name]
            row: dict[str, Any] = {"baseline": baseline, "candidate": candidate, "task_name": task_name, "note": ""}
            if base["data_fingerprint"] != cand["data_fingerprint"]:
                row["note"] = "different data fingerprints; not compared"
                rows.append(row)
                continue
            try:
                comparison = stats.compare_paired(
                    _item_scores(base["per_query_path"], cache),
                    _item_scores(cand["per_query_path"], cache),
                    n_resamples=n_resamples,
                    seed=seed,
                    confidence=confidence,
                    ci_method=ci_method,
                )
            except stats.ItemScoresError as error:
                logger.warning("No significance test for %s on %s: %s", candidate, task_name, error)
                row["note"] = str(error)
                rows.append(row)
                continue
            row.update(stats.comparison_row(comparison))
            _use_record_scores(row, base, cand)
            family.append(row)
            rows.append(row)

        adjusted = stats.holm_adjust([row["p_value"] for row in family])
        for row, p_holm in zip(family, adjusted):
            row["p_holm"] = p_holm
            row["significant"] = bool(p_holm < alpha)

    columns = [
        "baseline", "candidate", "task_name", "metric", "kind", "items", "baseline_score", "candidate_score",
        "delta", "ci_low", "ci_high", "p_value", "p_holm", "significant", "test", "ci_method", "confidence",
        "n_resamples", "seed", "note",
    ]
    return pd.DataFrame(rows, columns=columns)


def _use_record_scores(row: dict[str, Any], base: pd.Series, cand: pd.Series) -> None:
    """Show the records' main scores, as the checkpoint table does, in place of the ones recomputed from the sidecars.

    The sidecar's per-item scores give the unrounded score, so it can differ
    from the record's 6-decimal main score in the last printed digit. The
    delta is the difference of the two record scores, so it matches the
    columns. The p-value and the interval stay those of the per-item test.
    """
    row["baseline_score"] = float(base["main_score"])
    row["candidate_score"] = float(cand["main_score"])
    row["delta"] = row["candidate_score"] - row["baseline_score"]


def score_intervals(
    frame: pd.DataFrame,
    reference_environment: str,
    *,
    n_resamples: int = 10_000,
    seed: int = 0,
    confidence: float = 0.95,
    ci_method: str = "BCa",
) -> pd.DataFrame:
    """Return each checkpoint's main score per task with its bootstrap interval (NaN without per-item scores)."""
    chosen = preferred_records(frame, reference_environment)
    rows = []
    for record in chosen.itertuples(index=False):
        low = high = np.nan
        try:
            scores = stats.read_item_scores(Path(record.per_query_path))
            low, high = stats.score_interval(
                scores, n_resamples=n_resamples, seed=seed, confidence=confidence, ci_method=ci_method
            )
        except stats.ItemScoresError as error:
            logger.info("No interval for %s on %s: %s", record.checkpoint, record.task_name, error)
        rows.append(
            {
                "checkpoint": record.checkpoint,
                "task_name": record.task_name,
                "main_score_name": record.main_score_name,
                "main_score": record.main_score,
                "ci_low": low,
                "ci_high": high,
            }
        )
    return pd.DataFrame(rows)


def drift_table(
    frame: pd.DataFrame,
    reference_environment: str,
    *,
    tolerance: float = DEFAULT_TOLERANCE,
    task_tolerances: Optional[Mapping[str, float]] = None,
    n_resamples: int = 10_000,
    seed: int = 0,
    confidence: float = 0.95,
    ci_method: str = "BCa",
) -> pd.DataFrame:
    """Compare the same checkpoint and task across environments against the reference environment.

    Rows cover every (checkpoint without dtype, task) that has records in two
    or more environments. ``delta`` is the row's main score minus the
    reference environment's, ``exceeds`` flags ``|delta| > tolerance`` (a
    task's entry in ``task_tolerances`` overrides the default), and
    ``p_value``/``ci_low``/``ci_high`` come from the paired test on the
    per-item scores where both records have them. A group without a record
    in the reference environment is measured against its first environment
    in label order, and ``reference`` marks that row.
    """
    task_tolerances = dict(task_tolerances or {})
    cache: dict[str, Any] = {}
    rows = []
    for (settings, task_name), group in frame.groupby(["model_settings", "task_name"], sort=True):
        if group["environment"].nunique() < 2:
            continue
        # The reference row comes first, then the other environments by label.
        group = group.assign(_is_other=group["environment"] != reference_environment)
        group = group.sort_values(["_is_other", "environment"]).drop(columns="_is_other")
        reference = group.iloc[0]
        limit = task_tolerances.get(str(task_name), tolerance)

        for _, record in group.iterrows():
            is_reference = record["record_path"] == reference["record_path"]
            row: dict[str, Any] = {
                "checkpoint": settings,
                "task_name": task_name,
                "environment": record["environment"],
                "reference": is_reference,
                **{name: record[name] for name in PACKAGES},
                "device": record["device"],
                "dtype": record["dtype"],
                "main_score_name": record["main_score_name"],
                "main_score": record["main_score"],
                "delta": record["main_score"] - reference["main_score"],
                "tolerance": limit,
                "p_value": np.nan,
                "ci_low": np.nan,
                "ci_high": np.nan,
                "note": "",
            }
            row["exceeds"] = bool(abs(row["delta"]) > limit)
            if not is_reference:
                if record["data_fingerprint"] != reference["data_fingerprint"]:
                    row["note"] = "different data fingerprints than the reference"
                else:
                    try:
                        comparison = stats.compare_paired(
                            _item_scores(reference["per_query_path"], cache),
                            _item_scores(record["per_query_path"], cache),
                            n_resamples=n_resamples,
                            seed=seed,
                            confidence=confidence,
                            ci_method=ci_method,
                        )
                        row.update(p_value=comparison.p_value, ci_low=comparison.ci_low, ci_high=comparison.ci_high)
                    except stats.ItemScoresError as error:
                        row["note"] = str(error)
            rows.append(row)

    columns = [
        "checkpoint", "task_name", "environment", "reference", *PACKAGES, "device", "dtype", "main_score_name",
        "main_score", "delta", "tolerance", "exceeds", "p_value", "ci_low", "ci_high", "note",
    ]
    return pd.DataFrame(rows, columns=columns)
