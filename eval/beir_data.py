"""BEIR datasets on disk: locate or download a folder, check it, load it, fingerprint it.

A BEIR folder contains ``corpus.jsonl``, ``queries.jsonl`` and ``qrels/<split>.tsv``.
Every file is checked line by line before loading, so a malformed folder
fails with the file, the line number, the value and the fix instead of a
traceback from deep inside BEIR or MTEB. The corpus is then loaded with
BEIR's own ``GenericDataLoader``.

Each error has its own :class:`DataError` subclass; docs/RELIABILITY.md lists
them with the inputs that raise them. Problems that BEIR tolerates (qrels
naming unknown documents, queries without judgements, empty texts) do not
stop the run: they are counted in :attr:`BeirData.warnings` and reach the
results record.
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Optional
from urllib.parse import urlparse

from eval.hub import hub_offline

logger = logging.getLogger(__name__)

BEIR_DOWNLOAD_URL = "https://public.ukp.informatik.tu-darmstadt.de/thakur/BEIR/datasets/{name}.zip"
DOWNLOAD_PROBE_TIMEOUT_S = 5.0
QRELS_HEADER = ("query-id", "corpus-id", "score")
# At most this many example ids are named in a warning about many ids.
EXAMPLE_IDS = 5


class DataError(ValueError):
    """Evaluation data is missing or malformed; the message names the file, the line and the fix."""


class MissingFileError(DataError):
    """A required data file (corpus, queries, qrels or a split file) does not exist."""


class InvalidEncodingError(DataError):
    """A data file contains bytes that are not valid UTF-8."""


class InvalidJsonError(DataError):
    """A JSON Lines file has a line that is not one JSON object."""


class MissingFieldError(DataError):
    """A record lacks a required field (``_id``, ``text``) or a required column."""


class InvalidFieldError(DataError):
    """A field has the wrong type or a value outside its allowed range."""


class DuplicateIdError(DataError):
    """Two documents or two queries share an ``_id``."""


class InvalidQrelsError(DataError):
    """A qrels file has a wrong header, too few columns or a non-integer score."""


class EmptyDataError(DataError):
    """A corpus or query file contains no records, or no query of the split is judged."""


@dataclass
class BeirWarnings:
    """Counts of tolerated problems in a BEIR split, stored in the results record."""

    documents_without_title: int = 0
    empty_documents: int = 0
    empty_queries: int = 0
    qrels_unknown_documents: int = 0
    qrels_unknown_queries: int = 0
    queries_without_qrels: int = 0
    duplicate_judgements: int = 0

    def as_dict(self) -> dict[str, int]:
        """Return the counts as a JSON-ready mapping."""
        return dict(self.__dict__)


@dataclass
class BeirData:
    """One split of a BEIR dataset in BEIR's plain data model."""

    corpus: dict[str, dict[str, str]]
    queries: dict[str, str]
    qrels: dict[str, dict[str, int]]
    fingerprints: dict[str, str]
    folder: str
    warnings: BeirWarnings = field(default_factory=BeirWarnings)


def sha256_file(path: Path) -> str:
    """Return the hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def beir_files(folder: Path, split: str) -> dict[str, Path]:
    """Return the paths of the corpus, queries and qrels files of one split."""
    return {
        "corpus": folder / "corpus.jsonl",
        "queries": folder / "queries.jsonl",
        "qrels": folder / "qrels" / f"{split}.tsv",
    }


def ensure_beir_folder(data_dir: Path, name: str, split: str) -> Path:
    """Return ``<data_dir>/beir/<name>``, downloading it with BEIR's utility if it is absent.

    Raises:
        DataError: the folder is absent, and offline mode is on or the download server cannot be reached.
        MissingFileError: a required file is missing from an existing folder.
    """
    folder = data_dir / "beir" / name
    if not folder.exists():
        download_beir(data_dir / "beir", name)
    check_beir_folder(folder, split)
    return folder


def check_beir_folder(folder: Path, split: str) -> None:
    """Check that a BEIR folder has the three files of ``split``.

    Raises:
        MissingFileError: naming every missing file.
    """
    missing = [str(path) for path in beir_files(folder, split).values() if not path.is_file()]
    if missing:
        raise MissingFileError(
            f"BEIR folder {folder} is incomplete: missing {', '.join(missing)}. "
            f"A BEIR folder needs corpus.jsonl, queries.jsonl and qrels/{split}.tsv; "
            "delete the folder to download it again"
        )


def download_beir(target: Path, name: str) -> None:
    """Download and unzip BEIR dataset ``name`` into ``target`` with BEIR's utility.

    Nothing is downloaded while HF_HUB_OFFLINE or HF_DATASETS_OFFLINE is set,
    the variables that switch the Hugging Face libraries to offline mode.

    Raises:
        DataError: offline mode is on, or the download server cannot be reached.
    """
    url = BEIR_DOWNLOAD_URL.format(name=name)
    if hub_offline():
        reason = "HF_HUB_OFFLINE or HF_DATASETS_OFFLINE is set, which turns downloads off until it is unset"
        raise DataError(_not_downloaded(target, name, reason))
    unreachable = _probe(url)
    if unreachable:
        raise DataError(_not_downloaded(target, name, unreachable))

    from beir import util

    target.mkdir(parents=True, exist_ok=True)
    logger.info("Downloading BEIR %s from %s into %s", name, url, target)
    util.download_and_unzip(url, str(target))


def _not_downloaded(target: Path, name: str, reason: str) -> str:
    url = BEIR_DOWNLOAD_URL.format(name=name)
    return (
        f"BEIR dataset {name!r} is not in {target / name} and was not downloaded: {reason}. "
        f"Fetch {url} on a machine with network access and unzip it into {target}, or set data_dir "
        f"(or EVAL_DATA_DIR) to a folder that contains beir/{name}/"
    )


def _probe(url: str) -> str | None:
    parsed = urlparse(url)
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    try:
        with socket.create_connection((parsed.hostname, port), timeout=DOWNLOAD_PROBE_TIMEOUT_S):
            return None
    except OSError as error:
        return f"{parsed.hostname} is unreachable ({error})"


def _decode_line(path: Path, line_number: int, raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as error:
        bad = raw[error.start : error.start + 4]
        raise InvalidEncodingError(
            f"{path}, line {line_number}: byte {error.start + 1} ({bad!r}) is not valid UTF-8; "
            "re-encode the file as UTF-8 (for example `iconv -f latin1 -t utf-8`)"
        ) from None


def read_jsonl(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield ``(line number, object)`` for each line of a JSON Lines file, counting from 1.

    Raises:
        MissingFileError: the file does not exist.
        InvalidEncodingError: a line is not valid UTF-8.
        InvalidJsonError: a line is blank, is not valid JSON or is not a JSON object.
    """
    if not path.is_file():
        raise MissingFileError(f"{path} does not exist; expected a JSON Lines file with one record per line")

    with path.open("rb") as handle:
        for line_number, raw in enumerate(handle, start=1):
            line = _decode_line(path, line_number, raw)
            if not line.strip():
                raise InvalidJsonError(
                    f"{path}, line {line_number} is blank; JSON Lines files hold one JSON object per line, "
                    "so delete the blank line"
                )
            try:
                value = json.loads(line)
            except json.JSONDecodeError as error:
                raise InvalidJsonError(
                    f"{path}, line {line_number}, column {error.colno}: invalid JSON ({error.msg}): "
                    f"{_excerpt(line)}; fix or delete that line"
                ) from None
            if not isinstance(value, dict):
                raise InvalidJsonError(
                    f"{path}, line {line_number} is a JSON {type(value).__name__}, not an object: "
                    f"{_excerpt(line)}; each line must be an object such as "
                    '{"_id": "d1", "title": "", "text": "..."}'
                )
            yield line_number, value


def _excerpt(text: str, limit: int = 80) -> str:
    text = text.strip()
    return repr(text if len(text) <= limit else text[:limit] + "...")


def _string_field(path: Path, line_number: int, record: dict[str, Any], key: str, *, required: bool) -> Optional[str]:
    value = record.get(key)
    if value is None:
        if required:
            raise MissingFieldError(
                f"{path}, line {line_number} has no {key!r} value (keys: {', '.join(sorted(record)) or 'none'}); "
                "every line needs a string \"_id\" and a string \"text\""
            )
        return None
    if not isinstance(value, str):
        raise InvalidFieldError(
            f"{path}, line {line_number}: {key!r} is {value!r} ({type(value).__name__}), not a string; "
            f"write it as a JSON string, for example \"{key}\": {json.dumps(str(value))}"
        )
    return value


@dataclass
class _Scan:
    """Ids (with their line numbers) and texts from one pass over a corpus or query file."""

    ids: dict[str, int]
    texts: dict[str, str]


def _scan_records(path: Path, role: str, warnings: BeirWarnings, *, keep_texts: bool) -> _Scan:
    """Check every line of ``corpus.jsonl`` or ``queries.jsonl``; return its ids and line numbers."""
    ids: dict[str, int] = {}
    texts: dict[str, str] = {}
    for line_number, record in read_jsonl(path):
        record_id = _string_field(path, line_number, record, "_id", required=True)
        text = _string_field(path, line_number, record, "text", required=True)
        assert record_id is not None and text is not None
        if record_id in ids:
            raise DuplicateIdError(
                f"{path}, line {line_number}: {role} id {record_id!r} already appeared on line {ids[record_id]}; "
                "ids must be unique, so remove or rename one of them"
            )
        ids[record_id] = line_number

        if role == "document":
            title = _string_field(path, line_number, record, "title", required=False)
            if title is None:
                warnings.documents_without_title += 1
            if not (title or "").strip() and not text.strip():
                warnings.empty_documents += 1
        elif not text.strip():
            warnings.empty_queries += 1
        if keep_texts:
            texts[record_id] = text

    if not ids:
        raise EmptyDataError(f"{path} contains no {role}s; a BEIR {role} file needs at least one line")
    return _Scan(ids=ids, texts=texts)


def _check_qrels_header(path: Path, row: list[str]) -> None:
    normalised = tuple(column.strip().lower().replace("_", "-") for column in row[:3])
    if normalised != QRELS_HEADER:
        looks_like_data = len(row) >= 3 and row[2].strip().lstrip("-").isdigit()
        hint = "the header line is missing" if looks_like_data else "the header is wrong"
        raise InvalidQrelsError(
            f"{path}, line 1: expected the header {chr(9).join(QRELS_HEADER)!r} (tab-separated), found {row!r}; "
            f"{hint}, and BEIR skips the first line, so write the header as line 1"
        )


def _read_qrels(path: Path, warnings: BeirWarnings) -> list[tuple[int, str, str, int]]:
    """Check a qrels TSV and return its judgements as ``(line, query id, document id, score)``.

    The file is read as BEIR's ``GenericDataLoader`` reads it (``csv`` with tab
    delimiter and minimal quoting, first line skipped).
    """
    with path.open("rb") as handle:
        lines = [_decode_line(path, number, raw) for number, raw in enumerate(handle, start=1)]
    if not lines:
        raise EmptyDataError(f"{path} is empty; write the header {chr(9).join(QRELS_HEADER)!r} and one judgement per line")

    judgements = []
    seen: set[tuple[str, str]] = set()
    rows = csv.reader(lines, delimiter="\t", quoting=csv.QUOTE_MINIMAL)
    try:
        for index, row in enumerate(rows):
            line_number = rows.line_num
            if index == 0:
                _check_qrels_header(path, row)
                continue
            if len(row) < 3:
                raise InvalidQrelsError(
                    f"{path}, line {line_number}: {len(row)} column(s) {row!r}, expected 3 "
                    "(query-id, corpus-id, score) separated by tabs; fix or delete that line"
                )
            query_id, doc_id, score_text = row[0], row[1], row[2]
            try:
                score = int(score_text)
            except ValueError:
                raise InvalidQrelsError(
                    f"{path}, line {line_number}: score {score_text!r} is not an integer; "
                    "BEIR relevance scores are integers such as 0, 1 or 2"
                ) from None
            if (query_id, doc_id) in seen:
                warnings.duplicate_judgements += 1
            seen.add((query_id, doc_id))
            judgements.append((line_number, query_id, doc_id, score))
    except csv.Error as error:
        raise InvalidQrelsError(f"{path}, line {rows.line_num}: {error}; fix the quoting of that line") from None
    return judgements


def _example_ids(ids: list[str]) -> str:
    named = ", ".join(repr(value) for value in ids[:EXAMPLE_IDS])
    return named + (f" and {len(ids) - EXAMPLE_IDS} more" if len(ids) > EXAMPLE_IDS else "")


def load_beir(folder: Path, split: str) -> BeirData:
    """Check and load one split of a BEIR folder.

    The corpus is loaded with BEIR's ``GenericDataLoader.load_corpus``.
    Queries and qrels come from the checked pass over their files, built the
    way ``GenericDataLoader.load`` builds them (queries in qrels order, only
    judged queries), because ``load`` stops with a ``KeyError`` when qrels
    name a query that does not exist. Those judgements are dropped and
    counted here, and judgements of unknown documents are kept, as BEIR does.
    Titles that are null or missing become empty strings, because MTEB joins
    ``title + " " + text`` and fails on None.

    Raises:
        DataError: one of its subclasses, naming the file, the line and the fix.
    """
    from beir.datasets.data_loader import GenericDataLoader

    files = beir_files(folder, split)
    check_beir_folder(folder, split)
    warnings = BeirWarnings()

    documents = _scan_records(files["corpus"], "document", warnings, keep_texts=False)
    query_scan = _scan_records(files["queries"], "query", warnings, keep_texts=True)
    judgements = _read_qrels(files["qrels"], warnings)

    qrels: dict[str, dict[str, int]] = {}
    unknown_queries: list[str] = []
    unknown_documents: list[str] = []
    for _, query_id, doc_id, score in judgements:
        if query_id not in query_scan.ids:
            unknown_queries.append(query_id)
            continue
        if doc_id not in documents.ids:
            unknown_documents.append(doc_id)
        qrels.setdefault(query_id, {})[doc_id] = score

    warnings.qrels_unknown_queries = len(unknown_queries)
    warnings.qrels_unknown_documents = len(unknown_documents)
    warnings.queries_without_qrels = sum(1 for query_id in query_scan.ids if query_id not in qrels)
    if unknown_queries:
        logger.warning(
            "%s: %d judgement(s) name queries that are not in %s (%s); they are dropped",
            files["qrels"],
            len(unknown_queries),
            files["queries"].name,
            _example_ids(list(dict.fromkeys(unknown_queries))),
        )
    if unknown_documents:
        logger.warning(
            "%s: %d judgement(s) name documents that are not in %s (%s); they are kept as BEIR keeps them "
            "and count as relevant documents that no model can retrieve",
            files["qrels"],
            len(unknown_documents),
            files["corpus"].name,
            _example_ids(list(dict.fromkeys(unknown_documents))),
        )
    if not qrels:
        raise EmptyDataError(
            f"{files['qrels']} judges no query of {files['queries']}; check that its query-id column "
            "uses the _id values of the queries file"
        )

    corpus = GenericDataLoader(data_folder=str(folder)).load_corpus()
    for document in corpus.values():
        document["title"] = document.get("title") or ""
        document["text"] = document.get("text") or ""
    queries = {query_id: query_scan.texts[query_id] for query_id in qrels}

    _log_warnings(folder, split, warnings)
    fingerprints = {role: sha256_file(path) for role, path in files.items()}
    logger.info(
        "Loaded BEIR %s split %s: %d documents, %d queries, %d judgements",
        folder.name,
        split,
        len(corpus),
        len(queries),
        sum(len(judged) for judged in qrels.values()),
    )
    return BeirData(
        corpus=corpus, queries=queries, qrels=qrels, fingerprints=fingerprints, folder=str(folder), warnings=warnings
    )


def _log_warnings(folder: Path, split: str, warnings: BeirWarnings) -> None:
    if warnings.queries_without_qrels:
        logger.info(
            "BEIR %s split %s: %d queries have no judgement in this split and are skipped, as BEIR skips them",
            folder.name,
            split,
            warnings.queries_without_qrels,
        )
    if warnings.empty_documents or warnings.empty_queries:
        logger.warning(
            "BEIR %s: %d document(s) and %d query(ies) have empty or whitespace-only text; "
            "they are encoded as empty input",
            folder.name,
            warnings.empty_documents,
            warnings.empty_queries,
        )
    if warnings.duplicate_judgements:
        logger.warning(
            "BEIR %s split %s: %d (query, document) pair(s) are judged twice; the last score counts, as in BEIR",
            folder.name,
            split,
            warnings.duplicate_judgements,
        )
