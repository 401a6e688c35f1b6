"""Property: a generated BEIR folder, valid or broken, either evaluates or ends
with the documented DataError for its fault, never with another exception.

Each fault is a separate parametrised case, so every documented error is
exercised on generated folders in every test session.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from eval.beir_data import (
    DataError,
    DuplicateIdError,
    EmptyDataError,
    InvalidEncodingError,
    InvalidFieldError,
    InvalidJsonError,
    InvalidQrelsError,
    MissingFieldError,
)
from eval.config import compose_run_config
from eval.run import run

WORDS = ["the", "cat", "dog", "sat", "on", "mat", "fish", "swim", "sea", "red", "tree", "café", "naïve"]
MISSING = object()

# Each fault and the error that the loader documents for it.
FAULTS: dict[str, type[DataError]] = {
    "malformed_json": InvalidJsonError,
    "blank_line": InvalidJsonError,
    "missing_id": MissingFieldError,
    "missing_text": MissingFieldError,
    "numeric_id": InvalidFieldError,
    "duplicate_document": DuplicateIdError,
    "duplicate_query": DuplicateIdError,
    "wrong_header": InvalidQrelsError,
    "missing_header": InvalidQrelsError,
    "too_few_columns": InvalidQrelsError,
    "float_score": InvalidQrelsError,
    "latin1_bytes": InvalidEncodingError,
    "empty_corpus": EmptyDataError,
    "empty_queries": EmptyDataError,
}


@dataclass
class Folder:
    """A generated BEIR folder: its records, the tolerated irregularities, and at most one fault."""

    documents: list[dict[str, Any]]
    queries: list[dict[str, Any]]
    judgements: list[tuple[str, str, int]]
    fault: Optional[str]
    fault_line: int
    expected_warnings: dict[str, int] = field(default_factory=dict)


texts = st.one_of(
    st.lists(st.sampled_from(WORDS), min_size=1, max_size=8).map(" ".join),
    st.sampled_from(["", "   ", "\t"]),
)
titles = st.one_of(st.just(MISSING), st.none(), texts)


@st.composite
def beir_folders(draw: st.DrawFn, fault: Optional[str] = None) -> Folder:
    document_count = draw(st.integers(1, 12))
    query_count = draw(st.integers(1, 6))
    documents = []
    for index in range(document_count):
        document: dict[str, Any] = {"_id": f"d{index}", "text": draw(texts)}
        title = draw(titles)
        if title is not MISSING:
            document["title"] = title
        documents.append(document)
    queries = [{"_id": f"q{index}", "text": draw(texts)} for index in range(query_count)]

    # Judgements may name unknown queries and documents and repeat a pair;
    # the first one always judges a known pair, so the split is never empty.
    known_queries = [query["_id"] for query in queries]
    known_documents = [document["_id"] for document in documents]
    query_ids = st.sampled_from([*known_queries, "ghost-query"])
    document_ids = st.sampled_from([*known_documents, "ghost-document"])
    judgements = [(draw(st.sampled_from(known_queries)), draw(st.sampled_from(known_documents)), 1)]
    judgements += draw(st.lists(st.tuples(query_ids, document_ids, st.integers(0, 2)), max_size=10))

    fault_line = draw(st.integers(0, 100))
    folder = Folder(documents, queries, judgements, fault, fault_line)
    folder.expected_warnings = expected_warnings(folder)
    return folder


def expected_warnings(folder: Folder) -> dict[str, int]:
    """Count the tolerated irregularities independently of the loader."""
    query_ids = {query["_id"] for query in folder.queries}
    document_ids = {document["_id"] for document in folder.documents}
    judged = {query_id for query_id, _, _ in folder.judgements if query_id in query_ids}
    pairs = [(query_id, doc_id) for query_id, doc_id, _ in folder.judgements]
    return {
        "documents_without_title": sum(1 for d in folder.documents if d.get("title") is None),
        "empty_documents": sum(1 for d in folder.documents if not ((d.get("title") or "") + d["text"]).strip()),
        "empty_queries": sum(1 for q in folder.queries if not q["text"].strip()),
        "qrels_unknown_documents": sum(1 for q, d, _ in folder.judgements if q in query_ids and d not in document_ids),
        "qrels_unknown_queries": sum(1 for q, _, _ in folder.judgements if q not in query_ids),
        "queries_without_qrels": len(query_ids - judged),
        "duplicate_judgements": len(pairs) - len(set(pairs)),
    }


def jsonl(rows: list[Any]) -> list[bytes]:
    return [(json.dumps(row, ensure_ascii=False) + "\n").encode("utf-8") for row in rows]


def write(folder: Folder, root: Path) -> Path:
    """Write the folder as ``<root>/beir/scifact`` with its fault applied."""
    target = root / "beir" / "scifact"
    (target / "qrels").mkdir(parents=True)
    documents = [dict(row) for row in folder.documents]
    queries = [dict(row) for row in folder.queries]
    header = "query-id\tcorpus-id\tscore"
    qrels = [f"{q}\t{d}\t{score}" for q, d, score in folder.judgements]
    fault = folder.fault
    doc_index = folder.fault_line % len(documents)

    if fault == "missing_id":
        del documents[doc_index]["_id"]
    elif fault == "missing_text":
        del documents[doc_index]["text"]
    elif fault == "numeric_id":
        documents[doc_index]["_id"] = 7
    elif fault == "duplicate_document":
        documents.append({"_id": documents[doc_index]["_id"], "text": "again"})
    elif fault == "duplicate_query":
        queries.append({"_id": queries[0]["_id"], "text": "again"})
    elif fault == "wrong_header":
        header = "qid\tdocid\trelevance"
    elif fault == "missing_header":
        header = qrels.pop(0)
    elif fault == "too_few_columns":
        qrels.insert(folder.fault_line % (len(qrels) + 1), "q0 d0 1")
    elif fault == "float_score":
        qrels.append("q0\td0\t1.0")
    elif fault == "empty_corpus":
        documents = []
    elif fault == "empty_queries":
        queries = []

    corpus_lines = jsonl(documents)
    if fault == "malformed_json":
        corpus_lines.insert(doc_index, b'{"_id": "broken", "text": "no end\n')
    elif fault == "blank_line":
        corpus_lines.insert(doc_index, b"\n")
    elif fault == "latin1_bytes":
        corpus_lines.insert(doc_index, b'{"_id": "latin", "text": "caf\xe9"}\n')

    (target / "corpus.jsonl").write_bytes(b"".join(corpus_lines))
    (target / "queries.jsonl").write_bytes(b"".join(jsonl(queries)))
    (target / "qrels" / "test.tsv").write_text("\n".join([header, *qrels]) + "\n", encoding="utf-8")
    return root


@pytest.fixture(scope="module")
def one_thread() -> Any:
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def run_folder(folder: Folder, tiny_bert_dir: Path, root: Path) -> Any:
    overrides = [
        "task=beir/scifact",
        "model=local",
        f"model.path={tiny_bert_dir}",
        "model.device=cpu",
        f"data_dir={write(folder, root)}",
        f"results_dir={root / 'results'}",
        "cache_dir=null",
        "show_progress_bar=false",
    ]
    return run(compose_run_config(overrides), overrides)


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(folder=beir_folders())
def test_valid_folders_evaluate(folder: Folder, tiny_bert_dir: Path, one_thread: Any) -> None:
    with tempfile.TemporaryDirectory() as temporary:
        outcome = run_folder(folder, tiny_bert_dir, Path(temporary))

    record = outcome.record
    assert record["harness"]["task"]["data_warnings"]["SciFact"] == folder.expected_warnings
    assert 0.0 <= record["scores"]["test"][0]["main_score"] <= 1.0


@pytest.mark.parametrize("fault", sorted(FAULTS))
@settings(max_examples=4, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_broken_folders_fail_cleanly(fault: str, data: st.DataObject, tiny_bert_dir: Path, one_thread: Any) -> None:
    folder = data.draw(beir_folders(fault))

    with tempfile.TemporaryDirectory() as temporary:
        with pytest.raises(FAULTS[fault]) as caught:
            run_folder(folder, tiny_bert_dir, Path(temporary))

    assert temporary in str(caught.value)
