"""Acceptance on the real data: all-MiniLM-L6-v2 through this harness lands on
the scores that the MTEB leaderboard publishes for it (BEIR SciFact test,
STSBenchmark test, Banking77Classification test)."""

from __future__ import annotations

import json

import pytest
from scipy.stats import spearmanr

from eval import cpu_linear

pytestmark = pytest.mark.realdata

# Published MTEB leaderboard values for sentence-transformers/all-MiniLM-L6-v2.
PUBLISHED = {
    ("SciFact", "ndcg_at_10"): 0.64508,
    ("SciFact", "recall_at_100"): 0.925,
    ("STSBenchmark", "cosine_spearman"): 0.82032,
    ("Banking77Classification", "accuracy"): 0.80042,
}
TOLERANCE = 1e-4


def expected_linear_kernel() -> str:
    """Return the linear-layer kernel that a float32 CPU run uses by default with this torch build."""
    return cpu_linear.ONEDNN_KERNEL if cpu_linear.onednn_linear_available() else cpu_linear.TORCH_KERNEL


@pytest.mark.parametrize(("task_name", "metric"), list(PUBLISHED))
def test_published_score_reproduced(real_records: dict, task_name: str, metric: str) -> None:
    record = real_records[task_name].record
    split = record["harness"]["task"]["split"]
    measured = record["scores"][split][0][metric]
    assert measured == pytest.approx(PUBLISHED[(task_name, metric)], abs=TOLERANCE)


def test_scifact_record_describes_the_run(real_records: dict) -> None:
    harness = real_records["SciFact"].record["harness"]
    assert harness["model"]["weights_sha256"].startswith("53aa5117")
    assert harness["model"]["max_length"] == 256
    assert harness["model"]["linear_kernel"] == expected_linear_kernel()
    assert harness["model"]["prefixes"] == {"SciFact:query": "", "SciFact:document": ""}
    assert harness["task"]["fingerprints"]["SciFact"]["corpus"].startswith("dec31c81")
    assert harness["encoding"]["texts_by_prompt_type"] == {"query": 300, "document": 5183}


def test_sidecars_agree_with_main_scores(real_records: dict) -> None:
    for name, outcome in real_records.items():
        record = outcome.record
        sidecar = json.loads(outcome.record_path.with_name(f"{name}.per_query.json").read_text())
        main = record["scores"][sidecar["split"]][0]["main_score"]
        if sidecar["kind"] == "sts_pairs":
            recomputed = spearmanr(sidecar["gold"], sidecar["predicted"]).statistic
        else:
            recomputed = sum(sidecar["scores"].values()) / len(sidecar["scores"])
        assert recomputed == pytest.approx(main, abs=1e-5), name
