"""Report and statistics on real records: minilm-l6 without prefixes against E5 prefixes on STSBenchmark."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy import stats as scipy_stats

from eval import stats
from eval.report import ReportOptions, build_report
from eval.results import per_query_path

pytestmark = pytest.mark.realdata


@pytest.fixture(scope="module")
def e5_sts_record(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """STSBenchmark with E5 prefixes ("query: " on both sentences), about 20 s on a CPU."""
    from eval.config import compose_run_config
    from eval.run import run

    results_dir = tmp_path_factory.mktemp("e5-results")
    overrides = [
        "task=mteb/STSBenchmark",
        "model=minilm-l6",
        "prefix_scheme=e5",
        f"data_dir={data_dir}",
        f"results_dir={results_dir}",
        "show_progress_bar=false",
    ]
    return run(compose_run_config(overrides), overrides).record_path


def test_sts_comparison_matches_independent_loop(real_records, e5_sts_record: Path):
    baseline = stats.read_item_scores(per_query_path(real_records["STSBenchmark"].record_path))
    candidate = stats.read_item_scores(per_query_path(e5_sts_record))
    assert baseline.score() == pytest.approx(0.82032, abs=1e-5)

    resamples = 2000
    result = stats.compare_paired(baseline, candidate, n_resamples=resamples, seed=0, ci_method="percentile")
    gold, base, cand = baseline.gold, baseline.predicted, candidate.predicted

    def difference(g: np.ndarray, b: np.ndarray, c: np.ndarray) -> float:
        return scipy_stats.spearmanr(g, c).statistic - scipy_stats.spearmanr(g, b).statistic

    observed = difference(gold, base, cand)
    assert result.delta == pytest.approx(observed, abs=1e-12)

    # Independent randomization test: swap the two systems' predictions per pair.
    rng = np.random.default_rng(12345)
    extreme = 0
    for _ in range(resamples):
        swap = rng.random(len(gold)) < 0.5
        value = difference(gold, np.where(swap, cand, base), np.where(swap, base, cand))
        extreme += abs(value) >= abs(observed)
    independent_p = (extreme + 1) / (resamples + 1)
    margin = 4 * np.sqrt(max(independent_p * (1 - independent_p), 1e-4) / resamples) + 2 / resamples
    assert abs(result.p_value - independent_p) < margin

    # Independent percentile bootstrap over sentence pairs.
    values = []
    for _ in range(resamples):
        index = rng.integers(0, len(gold), len(gold))
        values.append(difference(gold[index], base[index], cand[index]))
    low, high = np.quantile(values, [0.025, 0.975])
    width = high - low
    assert result.ci_low == pytest.approx(low, abs=0.08 * width)
    assert result.ci_high == pytest.approx(high, abs=0.08 * width)


def test_report_over_real_records(real_records, e5_sts_record: Path, tmp_path: Path):
    baseline_folder = real_records["SciFact"].record_path.parents[3]
    options = ReportOptions(n_resamples=1000, baseline="prefix none")
    output = build_report([baseline_folder, e5_sts_record], tmp_path / "report", options)

    table = output.checkpoints
    none_row = table.loc[table.index.str.contains("prefix none")].iloc[0]
    assert none_row["SciFact"] == pytest.approx(0.64508, abs=1e-5)
    assert none_row["STSBenchmark"] == pytest.approx(0.82032, abs=1e-5)
    assert none_row["Banking77Classification"] == pytest.approx(0.80042, abs=1e-5)
    assert none_row["Average"] == pytest.approx((0.64508 + 0.82032 + 0.80042) / 3, abs=1e-5)

    e5_row = table.loc[table.index.str.contains("prefix e5")].iloc[0]
    assert np.isnan(e5_row["Average"])  # only STSBenchmark was run with E5 prefixes

    significance = output.significance.set_index("task_name")
    assert list(significance.index) == ["STSBenchmark"]
    assert significance.loc["STSBenchmark", "p_holm"] == pytest.approx(significance.loc["STSBenchmark", "p_value"])
