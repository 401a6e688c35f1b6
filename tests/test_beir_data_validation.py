"""Bad BEIR folders: each documented case ends in its own DataError naming the
file, the line and the value, and the tolerated cases are counted."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import pytest

from eval.beir_data import (
    BeirWarnings,
    DataError,
    DuplicateIdError,
    EmptyDataError,
    InvalidEncodingError,
    InvalidFieldError,
    InvalidJsonError,
    InvalidQrelsError,
    MissingFieldError,
    MissingFileError,
    load_beir,
)

CORPUS = [
    {"_id": "d1", "title": "Cats", "text": "the cat sat on the mat"},
    {"_id": "d2", "title": "Dogs", "text": "the dog sat on the mat"},
    {"_id": "d3", "title": "Fish", "text": "fish swim in the sea"},
]
QUERIES = [{"_id": "q1", "text": "cat"}, {"_id": "q2", "text": "fish"}]
QRELS = "query-id\tcorpus-id\tscore\nq1\td1\t1\nq2\td3\t1\n"


def write_folder(
    folder: Path,
    *,
    corpus: Optional[bytes] = None,
    queries: Optional[bytes] = None,
    qrels: Optional[bytes] = None,
) -> Path:
    """Write a BEIR folder; any file passed as bytes replaces the valid default."""
    (folder / "qrels").mkdir(parents=True, exist_ok=True)
    default_corpus = "".join(json.dumps(row) + "\n" for row in CORPUS).encode()
    default_queries = "".join(json.dumps(row) + "\n" for row in QUERIES).encode()
    (folder / "corpus.jsonl").write_bytes(default_corpus if corpus is None else corpus)
    (folder / "queries.jsonl").write_bytes(default_queries if queries is None else queries)
    (folder / "qrels" / "test.tsv").write_bytes(QRELS.encode() if qrels is None else qrels)
    return folder


def corpus_lines(*rows: object) -> bytes:
    return "".join((row if isinstance(row, str) else json.dumps(row)) + "\n" for row in rows).encode()


def test_valid_folder_matches_beir_loader(tmp_path: Path) -> None:
    from beir.datasets.data_loader import GenericDataLoader

    folder = write_folder(tmp_path)
    data = load_beir(folder, "test")
    corpus, queries, qrels = GenericDataLoader(data_folder=str(folder)).load(split="test")

    assert data.corpus == corpus
    assert data.queries == queries
    assert list(data.queries) == list(queries)
    assert data.qrels == qrels
    assert data.warnings == BeirWarnings()


@pytest.mark.parametrize("missing", ["corpus.jsonl", "queries.jsonl", "qrels/test.tsv"])
def test_missing_file_named(tmp_path: Path, missing: str) -> None:
    folder = write_folder(tmp_path)
    (folder / missing).unlink()

    with pytest.raises(MissingFileError) as caught:
        load_beir(folder, "test")

    assert str(folder / missing) in str(caught.value)


def test_malformed_json_reports_line(tmp_path: Path) -> None:
    corpus = corpus_lines(CORPUS[0], CORPUS[1], '{"_id": "d3", "text": "unterminated')
    folder = write_folder(tmp_path, corpus=corpus)

    with pytest.raises(InvalidJsonError) as caught:
        load_beir(folder, "test")

    message = str(caught.value)
    assert "corpus.jsonl, line 3" in message
    assert "unterminated" in message


def test_blank_line_reports_line(tmp_path: Path) -> None:
    folder = write_folder(tmp_path, queries=corpus_lines(QUERIES[0], "", QUERIES[1]))

    with pytest.raises(InvalidJsonError, match=r"queries\.jsonl, line 2 is blank"):
        load_beir(folder, "test")


def test_non_object_line_rejected(tmp_path: Path) -> None:
    folder = write_folder(tmp_path, corpus=corpus_lines(CORPUS[0], '["d2", "text"]'))

    with pytest.raises(InvalidJsonError, match=r"line 2 is a JSON list"):
        load_beir(folder, "test")


@pytest.mark.parametrize("key", ["_id", "text"])
def test_missing_id_or_text(tmp_path: Path, key: str) -> None:
    broken = {name: value for name, value in CORPUS[1].items() if name != key}
    folder = write_folder(tmp_path, corpus=corpus_lines(CORPUS[0], broken, CORPUS[2]))

    with pytest.raises(MissingFieldError) as caught:
        load_beir(folder, "test")

    message = str(caught.value)
    assert "corpus.jsonl, line 2" in message
    assert repr(key) in message


def test_query_without_text(tmp_path: Path) -> None:
    folder = write_folder(tmp_path, queries=corpus_lines(QUERIES[0], {"_id": "q2", "text": None}))

    with pytest.raises(MissingFieldError, match=r"queries\.jsonl, line 2 has no 'text'"):
        load_beir(folder, "test")


def test_numeric_id_rejected(tmp_path: Path) -> None:
    folder = write_folder(tmp_path, corpus=corpus_lines(CORPUS[0], {"_id": 2, "text": "two"}))

    with pytest.raises(InvalidFieldError) as caught:
        load_beir(folder, "test")

    assert "line 2" in str(caught.value)
    assert "'_id' is 2 (int)" in str(caught.value)


def test_null_and_missing_title_become_empty(tmp_path: Path) -> None:
    corpus = corpus_lines(
        {"_id": "d1", "title": None, "text": "the cat sat"},
        {"_id": "d2", "text": "the dog sat"},
        CORPUS[2],
    )
    data = load_beir(write_folder(tmp_path, corpus=corpus), "test")

    assert data.corpus["d1"]["title"] == ""
    assert data.corpus["d2"]["title"] == ""
    assert data.warnings.documents_without_title == 2


@pytest.mark.parametrize("role, file_name", [("document", "corpus"), ("query", "queries")])
def test_duplicate_ids_name_both_lines(tmp_path: Path, role: str, file_name: str) -> None:
    if role == "document":
        folder = write_folder(tmp_path, corpus=corpus_lines(CORPUS[0], CORPUS[1], {"_id": "d1", "text": "again"}))
    else:
        folder = write_folder(tmp_path, queries=corpus_lines(QUERIES[0], QUERIES[1], {"_id": "q1", "text": "x"}))

    with pytest.raises(DuplicateIdError) as caught:
        load_beir(folder, "test")

    message = str(caught.value)
    assert f"{file_name}.jsonl, line 3" in message
    assert "already appeared on line 1" in message


@pytest.mark.parametrize(
    "qrels, expected",
    [
        ("q1\td1\t1\nq2\td3\t1\n", "header line is missing"),
        ("qid\tdocid\trel\nq1\td1\t1\n", "header is wrong"),
    ],
)
def test_qrels_header_checked(tmp_path: Path, qrels: str, expected: str) -> None:
    folder = write_folder(tmp_path, qrels=qrels.encode())

    with pytest.raises(InvalidQrelsError) as caught:
        load_beir(folder, "test")

    assert "test.tsv, line 1" in str(caught.value)
    assert expected in str(caught.value)


def test_qrels_too_few_columns(tmp_path: Path) -> None:
    folder = write_folder(tmp_path, qrels=b"query-id\tcorpus-id\tscore\nq1\td1\t1\nq2 d3 1\n")

    with pytest.raises(InvalidQrelsError, match=r"test\.tsv, line 3: 1 column\(s\)"):
        load_beir(folder, "test")


@pytest.mark.parametrize("score", ["1.0", "relevant", ""])
def test_qrels_non_integer_score(tmp_path: Path, score: str) -> None:
    folder = write_folder(tmp_path, qrels=f"query-id\tcorpus-id\tscore\nq1\td1\t{score}\n".encode())

    with pytest.raises(InvalidQrelsError) as caught:
        load_beir(folder, "test")

    assert "line 2" in str(caught.value)
    assert f"score {score!r} is not an integer" in str(caught.value)


def test_dangling_qrels_counted(tmp_path: Path) -> None:
    qrels = "query-id\tcorpus-id\tscore\nq1\td1\t1\nq1\tmissing-doc\t1\nghost\td2\t1\nq2\td3\t1\n"
    data = load_beir(write_folder(tmp_path, qrels=qrels.encode()), "test")

    assert data.warnings.qrels_unknown_documents == 1
    assert data.warnings.qrels_unknown_queries == 1
    # BEIR keeps judgements of unknown documents; they lower recall, as in BEIR.
    assert data.qrels["q1"] == {"d1": 1, "missing-doc": 1}
    assert "ghost" not in data.qrels
    assert set(data.queries) == {"q1", "q2"}


def test_unjudged_queries_dropped_and_counted(tmp_path: Path) -> None:
    queries = corpus_lines(*QUERIES, {"_id": "q3", "text": "dog"}, {"_id": "q4", "text": "sea"})
    data = load_beir(write_folder(tmp_path, queries=queries), "test")

    assert list(data.queries) == ["q1", "q2"]
    assert data.warnings.queries_without_qrels == 2


def test_duplicate_judgements_counted(tmp_path: Path) -> None:
    qrels = "query-id\tcorpus-id\tscore\nq1\td1\t1\nq1\td1\t2\nq2\td3\t1\n"
    data = load_beir(write_folder(tmp_path, qrels=qrels.encode()), "test")

    assert data.warnings.duplicate_judgements == 1
    assert data.qrels["q1"] == {"d1": 2}


@pytest.mark.parametrize("file_name", ["corpus", "queries"])
def test_empty_file_rejected(tmp_path: Path, file_name: str) -> None:
    folder = write_folder(tmp_path, **{file_name: b""})

    with pytest.raises(EmptyDataError, match=f"{file_name}.jsonl contains no"):
        load_beir(folder, "test")


def test_qrels_judging_nothing_rejected(tmp_path: Path) -> None:
    folder = write_folder(tmp_path, qrels=b"query-id\tcorpus-id\tscore\nother\td1\t1\n")

    with pytest.raises(EmptyDataError, match="judges no query"):
        load_beir(folder, "test")


def test_empty_texts_counted(tmp_path: Path) -> None:
    corpus = corpus_lines(CORPUS[0], {"_id": "d2", "title": "  ", "text": "\t"}, {"_id": "d3", "title": "Only title", "text": ""})
    queries = corpus_lines(QUERIES[0], {"_id": "q2", "text": "   "})
    data = load_beir(write_folder(tmp_path, corpus=corpus, queries=queries), "test")

    assert data.warnings.empty_documents == 1
    assert data.warnings.empty_queries == 1
    assert data.corpus["d2"] == {"title": "  ", "text": "\t"}


@pytest.mark.parametrize("file_name", ["corpus", "queries", "qrels"])
def test_invalid_utf8_reports_line(tmp_path: Path, file_name: str) -> None:
    latin1 = "caf\u00e9".encode("latin-1")
    if file_name == "corpus":
        folder = write_folder(tmp_path, corpus=corpus_lines(CORPUS[0]) + b'{"_id": "d2", "text": "' + latin1 + b'"}\n')
        expected = "corpus.jsonl, line 2"
    elif file_name == "queries":
        folder = write_folder(tmp_path, queries=b'{"_id": "q1", "text": "' + latin1 + b'"}\n')
        expected = "queries.jsonl, line 1"
    else:
        folder = write_folder(tmp_path, qrels=b"query-id\tcorpus-id\tscore\nq1\t" + latin1 + b"\t1\n")
        expected = "test.tsv, line 2"

    with pytest.raises(InvalidEncodingError) as caught:
        load_beir(folder, "test")

    assert expected in str(caught.value)
    assert "not valid UTF-8" in str(caught.value)


def test_every_error_is_a_data_error() -> None:
    for error_type in (
        MissingFileError,
        InvalidEncodingError,
        InvalidJsonError,
        MissingFieldError,
        InvalidFieldError,
        DuplicateIdError,
        InvalidQrelsError,
        EmptyDataError,
    ):
        assert issubclass(error_type, DataError)
