"""The report's figures, drawn with matplotlib's non-interactive Agg backend into PNG bytes."""

from __future__ import annotations

import io
import math
from typing import Optional

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.colors import TwoSlopeNorm  # noqa: E402

DPI = 110


def _png(figure: "plt.Figure") -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI, bbox_inches="tight")
    plt.close(figure)
    return buffer.getvalue()


def _short(label: str, width: int = 48) -> str:
    return label if len(label) <= width else label[: width - 1] + "…"


def scores_plot(intervals: pd.DataFrame, confidence: float) -> Optional[bytes]:
    """Plot each task's main score per checkpoint with its bootstrap interval; one panel per task.

    Returns None when there is nothing to plot.
    """
    if intervals.empty:
        return None
    tasks = sorted(intervals["task_name"].unique())
    checkpoints = sorted(intervals["checkpoint"].unique())
    colors = plt.get_cmap("tab10")

    columns = min(3, len(tasks))
    rows = math.ceil(len(tasks) / columns)
    figure, axes = plt.subplots(rows, columns, figsize=(4.2 * columns, 3.2 * rows + 0.4 * len(checkpoints)), squeeze=False)
    for axis, task in zip(axes.flat, tasks):
        part = intervals[intervals["task_name"] == task].set_index("checkpoint")
        for position, checkpoint in enumerate(checkpoints):
            if checkpoint not in part.index:
                continue
            entry = part.loc[checkpoint]
            score = entry["main_score"]
            low, high = entry["ci_low"], entry["ci_high"]
            error = None if np.isnan(low) else [[score - low], [high - score]]
            axis.errorbar(position, score, yerr=error, fmt="o", capsize=5, color=colors(position % 10))
        axis.set_title(f"{task} ({part['main_score_name'].iloc[0]})", fontsize=10)
        axis.set_xticks(range(len(checkpoints)), [f"#{index + 1}" for index in range(len(checkpoints))])
        axis.set_xlim(-0.6, len(checkpoints) - 0.4)
        axis.grid(axis="y", alpha=0.3)
    for axis in list(axes.flat)[len(tasks):]:
        axis.set_visible(False)

    legend = "\n".join(f"#{index + 1}: {_short(label, 140)}" for index, label in enumerate(checkpoints))
    figure.suptitle(f"Main score per task with {confidence:.0%} bootstrap interval", fontsize=11)
    figure.text(0.01, -0.02, legend, ha="left", va="top", fontsize=8, family="monospace")
    figure.tight_layout()
    return _png(figure)


def drift_heatmap(drift: pd.DataFrame) -> Optional[bytes]:
    """Draw environments (rows) x (checkpoint, task) (columns), coloured by delta to the reference.

    Cells whose |delta| exceeds the tolerance are outlined. Returns None when
    no checkpoint and task was run in two environments.
    """
    if drift.empty:
        return None
    frame = drift.assign(column=drift["task_name"] + "\n" + drift["checkpoint"].map(lambda label: _short(label, 40)))
    deltas = frame.pivot_table(index="environment", columns="column", values="delta", aggfunc="first")
    exceeds = frame.pivot_table(index="environment", columns="column", values="exceeds", aggfunc="first")

    limit = max(float(np.nanmax(np.abs(deltas.to_numpy()))), float(drift["tolerance"].max()), 1e-9)
    references = set(drift.loc[drift["reference"].astype(bool), "environment"])
    order = sorted(deltas.index, key=lambda label: (label not in references, label))
    deltas = deltas.reindex(order)
    exceeds = exceeds.reindex(order)
    row_labels = [_short(label, 110) + (" [reference]" if label in references else "") for label in deltas.index]
    # Width: about 0.06 inch per character of the longest row label at font
    # size 8, plus 2.2 inches per heatmap column and room for the colour bar.
    label_width = 0.06 * max(len(label) for label in row_labels)
    figure, axis = plt.subplots(figsize=(label_width + 2.2 * deltas.shape[1] + 1.5, 1.4 + 0.6 * deltas.shape[0]))
    image = axis.imshow(deltas.to_numpy(dtype=float), cmap="RdBu", norm=TwoSlopeNorm(vcenter=0.0, vmin=-limit, vmax=limit), aspect="auto")

    for row in range(deltas.shape[0]):
        for column in range(deltas.shape[1]):
            value = deltas.iat[row, column]
            if np.isnan(value):
                continue
            axis.text(column, row, f"{value:+.5f}", ha="center", va="center", fontsize=9)
            if bool(exceeds.iat[row, column]):
                axis.add_patch(plt.Rectangle((column - 0.5, row - 0.5), 1, 1, fill=False, edgecolor="black", linewidth=2))

    axis.set_xticks(range(deltas.shape[1]), list(deltas.columns), fontsize=8)
    axis.set_yticks(range(deltas.shape[0]), row_labels, fontsize=8)
    axis.set_title("Main-score delta to the reference environment (outlined: beyond tolerance)", fontsize=10)
    figure.colorbar(image, ax=axis, label="delta", fraction=0.08, pad=0.03)
    figure.tight_layout()
    return _png(figure)
