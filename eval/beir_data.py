"""BEIR datasets on disk: locate or download a folder, load it, fingerprint it.

A BEIR folder holds ``corpus.jsonl``, ``queries.jsonl`` and ``qrels/<split>.tsv``.
Loading goes through BEIR's own ``GenericDataLoader``; this module adds the
checks and messages that it lacks and the sha256 fingerprints of the files.
"""

from __future__ import annotations

import hashlib
import logging
import socket
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

logger = logging.getLogger(__name__)

BEIR_DOWNLOAD_URL = "https://public.ukp.informatik.tu-darmstadt.de/thakur/BEIR/datasets/{name}.zip"
DOWNLOAD_PROBE_TIMEOUT_S = 5.0


class DataError(ValueError):
    """Evaluation data is missing or malformed."""


@dataclass
class BeirData:
    """One split of a BEIR dataset in BEIR's plain data model."""

    corpus: dict[str, dict[str, str]]
    queries: dict[str, str]
    qrels: dict[str, dict[str, int]]
    fingerprints: dict[str, str]
    folder: str


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
        DataError: the folder is absent and the download server cannot be reached,
            or a required file is missing from an existing folder.
    """
    folder = data_dir / "beir" / name
    if not folder.exists():
        download_beir(data_dir / "beir", name)
    check_beir_folder(folder, split)
    return folder


def check_beir_folder(folder: Path, split: str) -> None:
    """Check that a BEIR folder has the three files of ``split``.

    Raises:
        DataError: naming every missing file.
    """
    missing = [str(path) for path in beir_files(folder, split).values() if not path.is_file()]
    if missing:
        raise DataError(
            f"BEIR folder {folder} is incomplete: missing {', '.join(missing)}. "
            f"A BEIR folder needs corpus.jsonl, queries.jsonl and qrels/{split}.tsv; "
            "delete the folder to download it again"
        )


def download_beir(target: Path, name: str) -> None:
    """Download and unzip BEIR dataset ``name`` into ``target`` with BEIR's utility."""
    url = BEIR_DOWNLOAD_URL.format(name=name)
    unreachable = _probe(url)
    if unreachable:
        raise DataError(
            f"BEIR dataset {name!r} is not in {target / name} and cannot be downloaded: {unreachable}. "
            f"Fetch {url} on a machine with access, unzip it into {target}, or set data_dir "
            "(or EVAL_DATA_DIR) to a folder that holds beir/{name}/"
        )

    from beir import util

    target.mkdir(parents=True, exist_ok=True)
    logger.info("Downloading BEIR %s from %s into %s", name, url, target)
    util.download_and_unzip(url, str(target))


def _probe(url: str) -> str | None:
    parsed = urlparse(url)
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    try:
        with socket.create_connection((parsed.hostname, port), timeout=DOWNLOAD_PROBE_TIMEOUT_S):
            return None
    except OSError as error:
        return f"{parsed.hostname} is unreachable ({error})"


def load_beir(folder: Path, split: str) -> BeirData:
    """Load one split of a BEIR folder with BEIR's ``GenericDataLoader``.

    Titles that are null or missing become empty strings, because MTEB joins
    ``title + " " + text`` and fails on None.

    Raises:
        DataError: a file is unreadable or the split has no judged queries.
    """
    from beir.datasets.data_loader import GenericDataLoader

    files = beir_files(folder, split)
    try:
        corpus, queries, qrels = GenericDataLoader(data_folder=str(folder)).load(split=split)
    except (ValueError, KeyError) as error:
        raise DataError(f"could not load BEIR folder {folder} (split {split}): {error}") from error

    for document in corpus.values():
        document["title"] = document.get("title") or ""
        document["text"] = document.get("text") or ""
    if not qrels:
        raise DataError(f"{files['qrels']} judges no query; check its header (query-id, corpus-id, score)")

    fingerprints = {role: sha256_file(path) for role, path in files.items()}
    logger.info(
        "Loaded BEIR %s split %s: %d documents, %d queries, %d judgements",
        folder.name,
        split,
        len(corpus),
        len(queries),
        sum(len(judged) for judged in qrels.values()),
    )
    return BeirData(corpus=corpus, queries=queries, qrels=qrels, fingerprints=fingerprints, folder=str(folder))
