"""Comparison reports over results records: checkpoints, significance and environment drift.

:func:`build_report` reads records into a DataFrame (:mod:`eval.report.records`),
builds the tables (:mod:`eval.report.tables`) and figures
(:mod:`eval.report.plots`), and writes ``report.md``, a self-contained
``report.html``, the figures as PNG and the tables as CSV
(:mod:`eval.report.render`). ``python -m eval.report`` is the command line.
"""

from __future__ import annotations

import dataclasses
import datetime
import logging
from pathlib import Path
from typing import Mapping, Optional, Sequence

import pandas as pd

from eval.atomic import write_bytes_atomic, write_text_atomic
from eval.report import plots, render, tables
from eval.report.records import ReportArgumentError, ReportInputError, check_task_tolerances, load_records, select_environment

logger = logging.getLogger(__name__)

__all__ = ["ReportArgumentError", "ReportInputError", "ReportOptions", "ReportOutput", "build_report"]


@dataclasses.dataclass
class ReportOptions:
    """Choices that change the report's content.

    Args:
        baseline: part of the checkpoint label that significance tests compare against; the first label when None.
        reference_env: ``key=value[,...]`` picking the drift reference environment; the most common one when None.
        tolerance: |delta| of the main score above which a drift row is flagged.
        task_tolerances: per-task tolerance overriding ``tolerance``, keyed by MTEB task name.
        n_resamples: resamples of the randomization test and of the bootstrap.
        seed: seed of the ``numpy.random.Generator`` behind both.
        confidence: confidence level of the bootstrap intervals.
        ci_method: ``BCa``, ``percentile`` or ``basic`` (see ``scipy.stats.bootstrap``).
        alpha: family-wise error level for the Holm-corrected ``significant`` column.
        title: heading of the Markdown and HTML report.
    """

    baseline: Optional[str] = None
    reference_env: Optional[str] = None
    tolerance: float = tables.DEFAULT_TOLERANCE
    task_tolerances: Mapping[str, float] = dataclasses.field(default_factory=dict)
    n_resamples: int = 10_000
    seed: int = 0
    confidence: float = 0.95
    ci_method: str = "BCa"
    alpha: float = 0.05
    title: str = "Evaluation report"


@dataclasses.dataclass
class ReportOutput:
    """The written files and the DataFrames behind them."""

    files: dict[str, Path]
    records: pd.DataFrame
    checkpoints: pd.DataFrame
    significance: pd.DataFrame
    drift: pd.DataFrame
    intervals: pd.DataFrame
    baseline: str
    reference_environment: str
    # Files under the input paths that were skipped because they are not valid records.
    skipped_files: list[str] = dataclasses.field(default_factory=list)


def build_report(paths: Sequence[Path], output_dir: Path, options: Optional[ReportOptions] = None) -> ReportOutput:
    """Read the records under ``paths`` and write the report files into ``output_dir``.

    Raises:
        ReportInputError: no record found, or ``baseline``/``reference_env`` match nothing.
        ReportArgumentError: ``task_tolerances`` names a task without a record.
    """
    options = options or ReportOptions()
    resampling = dict(n_resamples=options.n_resamples, seed=options.seed, confidence=options.confidence, ci_method=options.ci_method)

    frame = load_records(paths)
    skipped_files = list(frame.attrs.get("skipped_files", []))
    check_task_tolerances(frame, options.task_tolerances)
    reference = select_environment(frame, options.reference_env)
    baseline = tables.select_checkpoint(frame, options.baseline)

    checkpoints = tables.checkpoint_table(frame, reference)
    logger.info("Testing %d checkpoints against the baseline", frame["checkpoint"].nunique() - 1)
    significance = tables.significance_table(frame, reference, baseline, alpha=options.alpha, **resampling)
    intervals = tables.score_intervals(frame, reference, **resampling)
    drift = tables.drift_table(
        frame, reference, tolerance=options.tolerance, task_tolerances=options.task_tolerances, **resampling
    )

    scores_png = plots.scores_plot(intervals, options.confidence)
    drift_png = plots.drift_heatmap(drift)
    sections = _sections(options, baseline, reference, checkpoints, significance, drift, scores_png, drift_png)
    summary = [
        f"Generated {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M UTC} from {len(frame)} records: "
        f"{frame['checkpoint'].nunique()} checkpoints, {frame['task_name'].nunique()} tasks, "
        f"{frame['environment'].nunique()} environments.",
        f"Reference environment: {reference}.",
    ]
    if skipped_files:
        summary.append(_skipped_summary(skipped_files))

    output_dir.mkdir(parents=True, exist_ok=True)
    files = {
        "markdown": output_dir / "report.md",
        "html": output_dir / "report.html",
        "records_csv": output_dir / "records.csv",
        "checkpoints_csv": output_dir / "checkpoints.csv",
        "significance_csv": output_dir / "significance.csv",
        "drift_csv": output_dir / "drift.csv",
        "intervals_csv": output_dir / "intervals.csv",
    }
    for name, png in (("scores.png", scores_png), ("drift.png", drift_png)):
        if png is not None:
            files[name.removesuffix(".png") + "_png"] = output_dir / name
            write_bytes_atomic(output_dir / name, png)

    write_text_atomic(files["markdown"], render.render_markdown(options.title, sections, summary))
    write_text_atomic(files["html"], render.render_html(options.title, sections, summary))
    render.write_csv(files["records_csv"], frame)
    render.write_csv(files["checkpoints_csv"], checkpoints, index=True)
    render.write_csv(files["significance_csv"], significance)
    render.write_csv(files["drift_csv"], drift)
    render.write_csv(files["intervals_csv"], intervals)
    logger.info("Wrote the report to %s", output_dir)

    return ReportOutput(files, frame, checkpoints, significance, drift, intervals, baseline, reference, skipped_files)


def _skipped_summary(skipped_files: Sequence[str], max_named: int = 10) -> str:
    """Count the skipped files and name the first ``max_named`` of them. The log names every one."""
    names = ", ".join(skipped_files[:max_named])
    if len(skipped_files) > max_named:
        names += f" and {len(skipped_files) - max_named} more"
    return f"Skipped {len(skipped_files)} files that are not valid records: {names}."


def _sections(
    options: ReportOptions,
    baseline: str,
    reference: str,
    checkpoints: pd.DataFrame,
    significance: pd.DataFrame,
    drift: pd.DataFrame,
    scores_png: Optional[bytes],
    drift_png: Optional[bytes],
) -> list[dict]:
    method = (
        f"Two-sided paired randomization test ({options.n_resamples} random swaps within each query, item or sentence pair) "
        f"and paired {options.ci_method} bootstrap {options.confidence:.0%} interval of candidate minus baseline, "
        f"seed {options.seed}; Holm's correction across the tasks of each candidate, significant at {options.alpha:g}."
    )
    return [
        {
            "heading": "Checkpoints",
            "notes": [
                "Main score per task; bold marks the best value of each column. "
                "An average is given only where a row has every task of its group.",
            ],
            "table": render.checkpoint_display(checkpoints),
            "css_class": "checkpoints",
        },
        {
            "heading": "Significance against the baseline",
            "notes": [f"Baseline: {baseline}.", method],
            "table": render.significance_display(significance, options.confidence),
            "figures": [("scores.png", scores_png)] if scores_png is not None else [],
            "css_class": "significance",
        },
        {
            "heading": "Environment drift",
            "notes": [
                f"Reference environment: {reference}. Delta is the main score minus the reference's, "
                f"and rows beyond the tolerance (default {options.tolerance:g}) are marked. "
                "p is the paired randomization test against the reference record.",
            ]
            if not drift.empty
            else ["No checkpoint and task has records from two or more environments."],
            "table": render.drift_display(drift) if not drift.empty else None,
            "figures": [("drift.png", drift_png)] if drift_png is not None else [],
            "css_class": "drift",
        },
    ]
