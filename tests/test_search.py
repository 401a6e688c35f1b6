"""Exact chunked search: same top-k as brute force, deterministic ties, and
memory bounded by the chunk size."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from eval.search import exact_search


def brute_force(queries: np.ndarray, corpus: np.ndarray, document_ids: list[str], top_k: int) -> list[list[str]]:
    scores = queries.astype(np.float32) @ corpus.astype(np.float32).T
    rankings = []
    for row in scores:
        order = sorted(range(len(document_ids)), key=lambda i: (-row[i], document_ids[i]))
        rankings.append([document_ids[i] for i in order[:top_k]])
    return rankings


@pytest.mark.parametrize("chunk_size", [1, 7, 64, 1000])
def test_matches_brute_force(chunk_size: int) -> None:
    generator = np.random.default_rng(0)
    corpus = generator.standard_normal((300, 16)).astype(np.float32)
    queries = generator.standard_normal((5, 16)).astype(np.float32)
    document_ids = [f"doc{i}" for i in range(300)]
    query_ids = [f"q{i}" for i in range(5)]

    results = exact_search(queries, corpus, query_ids, document_ids, top_k=10, chunk_size=chunk_size)
    expected = brute_force(queries, corpus, document_ids, 10)
    for query_id, ranking in zip(query_ids, expected):
        assert list(results[query_id]) == ranking


@pytest.mark.parametrize("chunk_size", [1, 2, 3, 50])
def test_ties_broken_by_document_id(chunk_size: int) -> None:
    corpus = np.array([[1.0, 0.0]] * 6 + [[0.0, 1.0]] * 4, dtype=np.float32)
    document_ids = ["f", "b", "e", "a", "d", "c", "z", "y", "x", "w"]
    results = exact_search(np.array([[1.0, 0.0]], dtype=np.float32), corpus, ["q"], document_ids, top_k=4, chunk_size=chunk_size)
    assert list(results["q"]) == ["a", "b", "c", "d"]
    assert all(score == 1.0 for score in results["q"].values())


def test_top_k_larger_than_corpus() -> None:
    corpus = np.eye(3, dtype=np.float32)
    results = exact_search(np.eye(3, dtype=np.float32)[:1], corpus, ["q"], ["a", "b", "c"], top_k=10, chunk_size=2)
    assert list(results["q"]) == ["a", "b", "c"]


def test_half_precision_scored_in_float32() -> None:
    generator = np.random.default_rng(1)
    corpus = generator.standard_normal((50, 8)).astype(np.float16)
    queries = generator.standard_normal((2, 8)).astype(np.float16)
    document_ids = [f"d{i:02d}" for i in range(50)]
    results = exact_search(queries, corpus, ["q0", "q1"], document_ids, top_k=5, chunk_size=16)
    expected = brute_force(queries.astype(np.float32), corpus.astype(np.float32), document_ids, 5)
    assert list(results["q0"]) == expected[0]
    assert list(results["q1"]) == expected[1]


SEARCH_MEMORY_SCRIPT = textwrap.dedent(
    """
    import json, resource, sys
    import numpy as np, torch
    from eval.search import search_chunks, chunk_ranges

    documents, dim, queries_count, chunk_size = 1_000_000, 384, 1000, 20_000
    torch.manual_seed(0)
    baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    corpus = torch.empty((documents, dim), dtype=torch.float32)
    for start, end in chunk_ranges(documents, 100_000):
        block = corpus[start:end]
        block.normal_()
        block.div_(block.norm(dim=1, keepdim=True))
    queries = torch.randn(queries_count, dim)
    queries = queries / queries.norm(dim=1, keepdim=True)
    after_corpus = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    document_ids = [f"doc{i:07d}" for i in range(documents)]
    ids_loaded = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024

    chunks = (corpus[start:end] for start, end in chunk_ranges(documents, chunk_size))
    best = search_chunks(queries, chunks, document_ids, top_k=10)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024

    sample = torch.arange(0, queries_count, 97)
    reference = torch.topk(queries[sample] @ corpus.T, 10, dim=1).indices
    same = bool(torch.equal(reference, best.positions[sample]))
    print(json.dumps({"baseline": baseline, "after_corpus": after_corpus, "ids_loaded": ids_loaded,
                      "peak": peak, "embeddings": corpus.numel() * 4, "same": same,
                      "chunk_scores": queries_count * chunk_size * 4}))
    """
)


def test_search_memory_bounded_by_chunk() -> None:
    """1 M x 384 float32 documents and 1,000 queries: peak memory is the
    embeddings plus a few chunk-sized score blocks, and the top-10 matches
    a brute-force reference on a sample of queries."""
    completed = subprocess.run([sys.executable, "-c", SEARCH_MEMORY_SCRIPT], capture_output=True, text=True, timeout=900)
    assert completed.returncode == 0, completed.stderr
    figures = json.loads(completed.stdout.strip().splitlines()[-1])

    search_overhead = figures["peak"] - figures["ids_loaded"]
    assert figures["same"]
    assert figures["after_corpus"] - figures["baseline"] <= figures["embeddings"] * 1.05, figures
    # The search keeps a few (queries x chunk) float32 blocks alive at once;
    # the reference check's full score matrix comes after the peak is read.
    assert search_overhead <= 8 * figures["chunk_scores"], figures


@pytest.mark.parametrize("task_class_name", ["MockRetrievalTask", "MockRerankingTask"])
def test_index_matches_mteb_default_search(tiny_bert_dir, task_class_name: str) -> None:
    """Through MTEB's evaluator, the exact index gives the scores of MTEB's own search."""
    import mteb
    from mteb.mocks import mock_tasks
    from mteb.models.search_wrappers import SearchEncoderWrapper

    from eval.config import ModelConfig
    from eval.encoder import E5Encoder
    from eval.search import ExactSearchIndex

    encoder = E5Encoder(ModelConfig(name="tiny", path=str(tiny_bert_dir), max_length=64), prefix_scheme="e5")
    default = mteb.evaluate(encoder, getattr(mock_tasks, task_class_name)(), cache=None, overwrite_strategy="always", show_progress_bar=False)
    exact = mteb.evaluate(
        SearchEncoderWrapper(encoder, index_backend=ExactSearchIndex(chunk_size=2)),
        getattr(mock_tasks, task_class_name)(),
        cache=None,
        overwrite_strategy="always",
        show_progress_bar=False,
    )
    default_scores = default.task_results[0].scores["test"][0]
    exact_scores = exact.task_results[0].scores["test"][0]
    for metric in ("ndcg_at_10", "map_at_10", "recall_at_10", "mrr_at_10"):
        assert exact_scores[metric] == pytest.approx(default_scores[metric], abs=1e-6), metric
