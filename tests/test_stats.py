"""Paired randomization test, bootstrap intervals and Holm's correction, checked against independent loops."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from scipy import stats as scipy_stats

from eval import stats


def per_query(values: np.ndarray, name: str = "run") -> stats.ItemScores:
    return stats.ItemScores("per_query", "ndcg_at_10", name, ids=[f"q{index}" for index in range(len(values))], values=values)


def sts(gold: np.ndarray, predicted: np.ndarray, name: str = "run") -> stats.ItemScores:
    return stats.ItemScores("sts_pairs", "cosine_spearman", name, gold=gold, predicted=predicted)


def sign_flip_p_value(differences: np.ndarray, resamples: int, seed: int) -> float:
    """Two-sided randomization p-value by swapping systems per item, written as a plain loop."""
    rng = np.random.default_rng(seed)
    observed = differences.mean()
    greater = less = 0
    for _ in range(resamples):
        signs = rng.choice((-1.0, 1.0), size=len(differences))
        value = (signs * differences).mean()
        greater += value >= observed
        less += value <= observed
    one_sided = min(greater + 1, less + 1) / (resamples + 1)
    return min(1.0, 2 * one_sided)


def percentile_interval(samples: list[np.ndarray], statistic, resamples: int, seed: int, confidence: float = 0.95) -> tuple[float, float]:
    """Paired percentile bootstrap: resample item indices, recompute the statistic, take quantiles."""
    rng = np.random.default_rng(seed)
    size = len(samples[0])
    values = []
    for _ in range(resamples):
        index = rng.integers(0, size, size)
        values.append(statistic(*(sample[index] for sample in samples)))
    tail = (1 - confidence) / 2
    return float(np.quantile(values, tail)), float(np.quantile(values, 1 - tail))


def bca_interval(samples: list[np.ndarray], statistic, resamples: int, seed: int, confidence: float = 0.95) -> tuple[float, float]:
    """Efron's BCa interval from its textbook formula: bias from the bootstrap, acceleration from the jackknife."""
    rng = np.random.default_rng(seed)
    size = len(samples[0])
    observed = statistic(*samples)
    boot = np.array([statistic(*(sample[index] for sample in samples)) for index in (rng.integers(0, size, size) for _ in range(resamples))])
    bias = scipy_stats.norm.ppf(np.mean(boot < observed))
    jackknife = np.array([statistic(*(np.delete(sample, item) for sample in samples)) for item in range(size)])
    centred = jackknife.mean() - jackknife
    acceleration = (centred**3).sum() / (6 * ((centred**2).sum()) ** 1.5)
    bounds = []
    for z in scipy_stats.norm.ppf([(1 - confidence) / 2, (1 + confidence) / 2]):
        level = scipy_stats.norm.cdf(bias + (bias + z) / (1 - acceleration * (bias + z)))
        bounds.append(float(np.quantile(boot, level)))
    return bounds[0], bounds[1]


def monte_carlo_margin(p_value: float, resamples: int) -> float:
    return 4 * np.sqrt(max(p_value * (1 - p_value), 1e-4) / resamples) + 2 / resamples


@pytest.fixture(scope="module")
def retrieval_pair() -> tuple[stats.ItemScores, stats.ItemScores]:
    rng = np.random.default_rng(7)
    baseline = rng.beta(2, 2, 300)
    candidate = np.clip(baseline + rng.normal(0.012, 0.08, 300), 0, 1)
    return per_query(baseline, "baseline"), per_query(candidate, "candidate")


def test_mean_kind_p_value_matches_loop(retrieval_pair):
    baseline, candidate = retrieval_pair
    result = stats.compare_paired(baseline, candidate, n_resamples=4000, seed=3)
    independent = sign_flip_p_value(candidate.values - baseline.values, 4000, seed=11)

    assert result.delta == pytest.approx(candidate.values.mean() - baseline.values.mean(), abs=1e-12)
    assert 0.001 < result.p_value < 0.5
    assert abs(result.p_value - independent) < monte_carlo_margin(independent, 4000)


@pytest.mark.parametrize("method,reference", [("percentile", percentile_interval), ("BCa", bca_interval)])
def test_mean_kind_interval_matches_loop(retrieval_pair, method, reference):
    baseline, candidate = retrieval_pair
    result = stats.compare_paired(baseline, candidate, n_resamples=4000, seed=3, ci_method=method)
    low, high = reference([baseline.values, candidate.values], lambda b, c: np.mean(c - b), 4000, seed=5)

    # Two independent Monte Carlo estimates of the same quantile; 4000
    # resamples leave them a few thousandths of the interval width apart.
    width = high - low
    assert result.ci_low < result.delta < result.ci_high
    assert result.ci_low == pytest.approx(low, abs=0.06 * width)
    assert result.ci_high == pytest.approx(high, abs=0.06 * width)


def test_sts_kind_matches_spearman_loop():
    rng = np.random.default_rng(2)
    gold = np.round(rng.uniform(0, 5, 400) * 5) / 5  # ties, as in STS gold scores
    baseline = sts(gold, gold + rng.normal(0, 1.2, 400), "baseline")
    candidate = sts(gold, gold + rng.normal(0, 0.9, 400), "candidate")

    result = stats.compare_paired(baseline, candidate, n_resamples=2000, seed=1, ci_method="percentile")

    def difference(g, b, c):
        return scipy_stats.spearmanr(g, c).statistic - scipy_stats.spearmanr(g, b).statistic

    assert result.delta == pytest.approx(difference(gold, baseline.predicted, candidate.predicted), abs=1e-12)
    assert result.baseline_score == pytest.approx(scipy_stats.spearmanr(gold, baseline.predicted).statistic)

    loop_rng = np.random.default_rng(9)
    greater = less = 0
    for _ in range(2000):
        swap = loop_rng.random(400) < 0.5
        permuted_b = np.where(swap, candidate.predicted, baseline.predicted)
        permuted_c = np.where(swap, baseline.predicted, candidate.predicted)
        value = difference(gold, permuted_b, permuted_c)
        greater += value >= result.delta
        less += value <= result.delta
    independent_p = min(1.0, 2 * min(greater + 1, less + 1) / 2001)
    assert abs(result.p_value - independent_p) < monte_carlo_margin(independent_p, 2000)

    low, high = percentile_interval([gold, baseline.predicted, candidate.predicted], difference, 2000, seed=4)
    width = high - low
    assert result.ci_low == pytest.approx(low, abs=0.08 * width)
    assert result.ci_high == pytest.approx(high, abs=0.08 * width)


def test_vectorized_spearman_matches_scipy():
    rng = np.random.default_rng(0)
    x = np.round(rng.normal(size=(5, 60)), 1)
    y = np.round(x + rng.normal(size=(5, 60)), 1)
    expected = [scipy_stats.spearmanr(row_x, row_y).statistic for row_x, row_y in zip(x, y)]
    np.testing.assert_allclose(stats.spearman_along_last_axis(x, y), expected, rtol=1e-12)


def test_same_seed_same_result(retrieval_pair):
    baseline, candidate = retrieval_pair
    first = stats.compare_paired(baseline, candidate, n_resamples=1000, seed=42)
    second = stats.compare_paired(baseline, candidate, n_resamples=1000, seed=42)
    other = stats.compare_paired(baseline, candidate, n_resamples=1000, seed=43)

    assert first == second
    assert (other.p_value, other.ci_low) != (first.p_value, first.ci_low)


def test_identical_systems_not_significant():
    values = np.linspace(0, 1, 50)
    result = stats.compare_paired(per_query(values), per_query(values.copy()), n_resamples=500)
    assert result.delta == 0.0
    assert result.p_value == 1.0
    assert (result.ci_low, result.ci_high) == (0.0, 0.0)


def test_clear_difference_is_significant():
    rng = np.random.default_rng(1)
    baseline = rng.uniform(0, 0.5, 200)
    result = stats.compare_paired(per_query(baseline), per_query(baseline + 0.2), n_resamples=2000)
    assert result.p_value < 0.001
    assert result.ci_low == pytest.approx(0.2)
    assert result.ci_high == pytest.approx(0.2)


def test_align_rejects_other_items():
    baseline = per_query(np.ones(3))
    candidate = stats.ItemScores("per_query", "ndcg_at_10", "other", ids=["q0", "q1", "x"], values=np.ones(3))
    with pytest.raises(stats.ItemScoresError, match="score different items"):
        stats.align(baseline, candidate)


def test_align_rejects_other_gold():
    with pytest.raises(stats.ItemScoresError, match="different gold scores"):
        stats.align(sts(np.arange(5.0), np.arange(5.0)), sts(np.arange(5.0) + 1, np.arange(5.0)))


def test_align_orders_by_baseline_ids():
    baseline = stats.ItemScores("per_item", "accuracy", "a", ids=["0", "1", "2"], values=np.array([0.1, 0.2, 0.3]))
    candidate = stats.ItemScores("per_item", "accuracy", "b", ids=["2", "0", "1"], values=np.array([3.0, 1.0, 2.0]))
    _, aligned = stats.align(baseline, candidate)
    np.testing.assert_array_equal(aligned, [1.0, 2.0, 3.0])


def test_holm_matches_hand_computation():
    # Sorted p: 0.01*3 = 0.03, 0.03*2 = 0.06, then max(0.06, 0.04*1) = 0.06.
    assert stats.holm_adjust([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert stats.holm_adjust([]) == []


def test_read_item_scores_kinds(tmp_path: Path):
    none_kind = tmp_path / "none.per_query.json"
    none_kind.write_text(json.dumps({"kind": "none", "metric": "v_measure", "scores": {}}))
    with pytest.raises(stats.ItemScoresError, match="kind 'none'"):
        stats.read_item_scores(none_kind)

    legacy = tmp_path / "legacy.per_query.json"
    legacy.write_text(json.dumps({"metric": "ndcg_at_10", "pytrec_eval_measure": "ndcg_cut_10", "scores": {"1": 0.5, "2": 1.0}}))
    scores = stats.read_item_scores(legacy)
    assert scores.kind == "per_query"
    assert scores.score() == pytest.approx(0.75)

    with pytest.raises(stats.ItemScoresError, match="not found"):
        stats.read_item_scores(tmp_path / "missing.per_query.json")


def test_score_interval_covers_score(retrieval_pair):
    baseline, _ = retrieval_pair
    low, high = stats.score_interval(baseline, n_resamples=1000, seed=0)
    assert low < baseline.score() < high
