"""Paired significance tests and bootstrap intervals on per-item scores.

The inputs are the sidecar files that runs write beside each record
(``<TaskName>.per_query.json``):

- ``per_query`` (retrieval) and ``per_item`` (classification): one score per
  query or test item. The main score is their mean, so two systems are
  compared on the mean of the paired differences.
- ``sts_pairs``: gold and predicted similarity per sentence pair; the main
  score is Spearman's rho, so each resample recomputes both correlations.

The randomization test and the bootstrap are ``scipy.stats.permutation_test``
(``permutation_type="samples"`` swaps the two systems' values within a pair)
and ``scipy.stats.bootstrap`` (``paired=True`` resamples items jointly), with
a seeded ``numpy.random.Generator``, so equal inputs and seed give equal
results. Holm's correction is ``statsmodels.stats.multitest.multipletests``.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import warnings
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import numpy as np
from scipy import stats as scipy_stats

logger = logging.getLogger(__name__)

MEAN_KINDS = ("per_query", "per_item")
STS_KIND = "sts_pairs"
CI_METHODS = ("BCa", "percentile", "basic")


class ItemScoresError(ValueError):
    """A sidecar is missing, of an unusable kind, or does not pair with another; the message names the file."""


@dataclasses.dataclass
class ItemScores:
    """Per-item scores of one record, as read from its sidecar.

    ``ids`` and ``values`` hold per-query or per-item scores (kinds
    ``per_query`` and ``per_item``); ``gold`` and ``predicted`` hold the
    similarity pairs of kind ``sts_pairs``.
    """

    kind: str
    metric: str
    source: str
    ids: list[str] = dataclasses.field(default_factory=list)
    values: np.ndarray = dataclasses.field(default_factory=lambda: np.empty(0))
    gold: np.ndarray = dataclasses.field(default_factory=lambda: np.empty(0))
    predicted: np.ndarray = dataclasses.field(default_factory=lambda: np.empty(0))

    @property
    def size(self) -> int:
        """Number of queries, items or sentence pairs."""
        return len(self.gold) if self.kind == STS_KIND else len(self.values)

    def score(self) -> float:
        """Return the main score these items reproduce: their mean, or Spearman's rho for STS pairs."""
        if self.kind == STS_KIND:
            return float(scipy_stats.spearmanr(self.gold, self.predicted).statistic)
        return float(np.mean(self.values))


def read_item_scores(path: Path) -> ItemScores:
    """Read a ``.per_query.json`` sidecar.

    Raises:
        ItemScoresError: the file is missing, not JSON, or of kind ``none`` or an unknown kind.
    """
    if not path.is_file():
        raise ItemScoresError(f"per-item scores {path} not found; re-run the evaluation with overwrite=true to write them")
    try:
        payload = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise ItemScoresError(f"{path} is not valid JSON: {error}") from error

    kind = payload.get("kind", "none")
    if "kind" not in payload and payload.get("pytrec_eval_measure"):
        # Sidecars written before the "kind" field existed held retrieval
        # per-query scores only, marked by their pytrec_eval measure.
        kind = "per_query"
    metric = str(payload.get("metric", ""))
    if kind in MEAN_KINDS:
        scores: dict[str, float] = payload.get("scores") or {}
        if not scores:
            raise ItemScoresError(f"{path} has kind {kind!r} but no scores")
        ids = list(scores)
        return ItemScores(kind, metric, str(path), ids=ids, values=np.array([scores[key] for key in ids], dtype=float))
    if kind == STS_KIND:
        gold = np.asarray(payload.get("gold") or [], dtype=float)
        predicted = np.asarray(payload.get("predicted") or [], dtype=float)
        if len(gold) == 0 or len(gold) != len(predicted):
            raise ItemScoresError(f"{path}: 'gold' ({len(gold)}) and 'predicted' ({len(predicted)}) must be non-empty and of equal length")
        return ItemScores(kind, metric, str(path), gold=gold, predicted=predicted)
    raise ItemScoresError(f"{path} has kind {kind!r}; only {', '.join((*MEAN_KINDS, STS_KIND))} carry per-item scores")


def align(baseline: ItemScores, candidate: ItemScores) -> tuple[np.ndarray, ...]:
    """Return the paired arrays of two systems on the same items.

    Mean kinds return ``(baseline values, candidate values)`` ordered by the
    baseline's ids; STS returns ``(gold, baseline predicted, candidate predicted)``.

    Raises:
        ItemScoresError: kinds or metrics differ, the item ids differ, or the STS gold scores differ.
    """
    if baseline.kind != candidate.kind or baseline.metric != candidate.metric:
        raise ItemScoresError(
            f"cannot pair {baseline.source} ({baseline.kind}, {baseline.metric}) "
            f"with {candidate.source} ({candidate.kind}, {candidate.metric})"
        )
    if baseline.kind == STS_KIND:
        if baseline.gold.shape != candidate.gold.shape or not np.array_equal(baseline.gold, candidate.gold):
            raise ItemScoresError(f"{baseline.source} and {candidate.source} hold different gold scores; they come from different data")
        return baseline.gold, baseline.predicted, candidate.predicted

    candidate_by_id = dict(zip(candidate.ids, candidate.values))
    missing = [item for item in baseline.ids if item not in candidate_by_id]
    extra = len(candidate.ids) - (len(baseline.ids) - len(missing))
    if missing or extra:
        raise ItemScoresError(
            f"{baseline.source} and {candidate.source} score different items "
            f"({len(missing)} only in the first, {extra} only in the second, e.g. {missing[:3]}); "
            "compare records of the same task, split and data"
        )
    return baseline.values, np.array([candidate_by_id[item] for item in baseline.ids], dtype=float)


def spearman_along_last_axis(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Return Spearman's rho of ``x`` and ``y`` along the last axis (ties get average ranks).

    ``scipy.stats.spearmanr`` handles one pair of vectors at a time; this
    form lets the resampling functions score a whole batch of resamples at once.
    """
    rank_x = scipy_stats.rankdata(x, axis=-1)
    rank_y = scipy_stats.rankdata(y, axis=-1)
    rank_x = rank_x - rank_x.mean(axis=-1, keepdims=True)
    rank_y = rank_y - rank_y.mean(axis=-1, keepdims=True)
    numerator = (rank_x * rank_y).sum(axis=-1)
    denominator = np.sqrt((rank_x**2).sum(axis=-1) * (rank_y**2).sum(axis=-1))
    return numerator / denominator


def _mean_difference(baseline: np.ndarray, candidate: np.ndarray, axis: int = -1) -> np.ndarray:
    return np.mean(candidate - baseline, axis=axis)


def _spearman_difference(gold: np.ndarray) -> Callable[..., np.ndarray]:
    # The permutation test swaps only the two predictions, so the gold scores
    # stay fixed per pair and enter through the closure.
    def statistic(baseline: np.ndarray, candidate: np.ndarray, axis: int = -1) -> np.ndarray:
        return spearman_along_last_axis(gold, candidate) - spearman_along_last_axis(gold, baseline)

    return statistic


def _resampled_spearman_difference(gold: np.ndarray, baseline: np.ndarray, candidate: np.ndarray, axis: int = -1) -> np.ndarray:
    return spearman_along_last_axis(gold, candidate) - spearman_along_last_axis(gold, baseline)


@dataclasses.dataclass
class PairedComparison:
    """Difference of a candidate against a baseline on one task, with its test and interval."""

    kind: str
    metric: str
    items: int
    baseline_score: float
    candidate_score: float
    delta: float
    ci_low: float
    ci_high: float
    p_value: float
    test: str
    ci_method: str
    confidence: float
    n_resamples: int
    seed: int


def _bootstrap_interval(
    data: tuple[np.ndarray, ...],
    statistic: Callable[..., np.ndarray],
    *,
    confidence: float,
    n_resamples: int,
    method: str,
    rng: np.random.Generator,
) -> tuple[float, float]:
    with warnings.catch_warnings():
        # scipy warns and returns NaN when every resample gives the same value
        # (two identical systems), and BCa's jackknife then divides 0 by 0; the
        # caller turns the NaN into a zero-width interval.
        warnings.simplefilter("ignore", category=scipy_stats.DegenerateDataWarning)
        warnings.simplefilter("ignore", category=RuntimeWarning)
        result = scipy_stats.bootstrap(
            data,
            statistic,
            paired=True,
            vectorized=True,
            n_resamples=n_resamples,
            confidence_level=confidence,
            method=method,
            batch=_batch_size(len(data[0])),
            rng=rng,
        )
    return float(result.confidence_interval.low), float(result.confidence_interval.high)


def _batch_size(items: int) -> int:
    # Bound the memory of one vectorized batch to about 4e7 floats per array.
    return max(1, min(10_000, 40_000_000 // max(items, 1)))


def compare_paired(
    baseline: ItemScores,
    candidate: ItemScores,
    *,
    n_resamples: int = 10_000,
    seed: int = 0,
    confidence: float = 0.95,
    ci_method: str = "BCa",
) -> PairedComparison:
    """Test candidate against baseline on the same items: paired randomization test and bootstrap CI.

    The p-value is two-sided, from ``n_resamples`` random sign swaps of the
    paired items (an exact test over all 2^n swaps is out of reach for
    hundreds of queries). The interval is the bootstrap ``confidence``
    interval of ``candidate - baseline``.

    Raises:
        ItemScoresError: the two score sets do not pair (see :func:`align`).
        ValueError: ``ci_method`` is not one of :data:`CI_METHODS`.
    """
    if ci_method not in CI_METHODS:
        raise ValueError(f"invalid ci_method {ci_method!r}; valid choices: {', '.join(CI_METHODS)}")
    arrays = align(baseline, candidate)

    if baseline.kind == STS_KIND:
        gold, base_values, cand_values = arrays
        test_statistic = _spearman_difference(gold)
        bootstrap_data: tuple[np.ndarray, ...] = (gold, base_values, cand_values)
        bootstrap_statistic: Callable[..., np.ndarray] = _resampled_spearman_difference
        test_name = "paired randomization (Spearman difference)"
    else:
        base_values, cand_values = arrays
        test_statistic = _mean_difference
        bootstrap_data = (base_values, cand_values)
        bootstrap_statistic = _mean_difference
        test_name = "paired randomization (mean difference)"

    delta = float(test_statistic(base_values, cand_values))
    baseline_score = baseline.score()
    candidate_score = candidate.score()

    if np.array_equal(base_values, cand_values):
        # Identical systems: every swap and every resample gives 0.
        return PairedComparison(
            baseline.kind, baseline.metric, len(base_values), baseline_score, candidate_score,
            0.0, 0.0, 0.0, 1.0, test_name, ci_method, confidence, n_resamples, seed,
        )

    rng = np.random.default_rng(seed)
    permutation = scipy_stats.permutation_test(
        (base_values, cand_values),
        test_statistic,
        permutation_type="samples",
        vectorized=True,
        n_resamples=n_resamples,
        batch=_batch_size(len(base_values)),
        alternative="two-sided",
        rng=rng,
    )
    low, high = _bootstrap_interval(
        bootstrap_data, bootstrap_statistic, confidence=confidence, n_resamples=n_resamples, method=ci_method, rng=rng
    )
    if np.isnan(low) or np.isnan(high):
        low = high = delta

    return PairedComparison(
        kind=baseline.kind,
        metric=baseline.metric,
        items=len(base_values),
        baseline_score=baseline_score,
        candidate_score=candidate_score,
        delta=delta,
        ci_low=low,
        ci_high=high,
        p_value=float(permutation.pvalue),
        test=test_name,
        ci_method=ci_method,
        confidence=confidence,
        n_resamples=n_resamples,
        seed=seed,
    )


def score_interval(
    scores: ItemScores,
    *,
    n_resamples: int = 10_000,
    seed: int = 0,
    confidence: float = 0.95,
    ci_method: str = "BCa",
) -> tuple[float, float]:
    """Return the bootstrap ``confidence`` interval of one system's main score (mean, or Spearman for STS)."""
    rng = np.random.default_rng(seed)
    if scores.kind == STS_KIND:
        data: tuple[np.ndarray, ...] = (scores.gold, scores.predicted)

        def statistic(gold: np.ndarray, predicted: np.ndarray, axis: int = -1) -> np.ndarray:
            return spearman_along_last_axis(gold, predicted)
    else:
        data = (scores.values,)

        def statistic(values: np.ndarray, axis: int = -1) -> np.ndarray:
            return np.mean(values, axis=axis)

    if np.all(data[-1] == data[-1][0]):
        value = scores.score()
        return value, value
    low, high = _bootstrap_interval(data, statistic, confidence=confidence, n_resamples=n_resamples, method=ci_method, rng=rng)
    if np.isnan(low) or np.isnan(high):
        value = scores.score()
        return value, value
    return low, high


def holm_adjust(p_values: Sequence[float]) -> list[float]:
    """Return Holm's step-down adjusted p-values (family-wise error control), in input order."""
    if len(p_values) == 0:
        return []
    from statsmodels.stats.multitest import multipletests

    _, adjusted, _, _ = multipletests(list(p_values), method="holm")
    return [float(value) for value in adjusted]


def comparison_row(comparison: PairedComparison, extra: Optional[dict[str, Any]] = None) -> dict[str, Any]:
    """Flatten a comparison into one table row."""
    return {**(extra or {}), **dataclasses.asdict(comparison)}
