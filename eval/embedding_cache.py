"""Content-addressed store of finished embedding chunks, so an interrupted encode resumes.

The encoder splits the texts of each encode call into chunks of whole
batches and stores each finished chunk here as a ``.npy`` file. A killed run
keeps every chunk it finished. The next run with the same model settings
finds those chunks by key and encodes only the rest.

Layout: ``<cache_dir>/<model fingerprint digest>/<chunk key>.npy``, plus a
``fingerprint.json`` in each model folder that lists what the digest covers.
Both names are hex digests, so no model id or text ever becomes a path.

The model fingerprint covers everything that changes an embedding's bits:
the weights and tokenizer files, dtype, device type, max_length, pooling,
batch size and token budget (padding changes float sums), the torch,
transformers and tokenizers versions, and the encoder module's source. The chunk key adds the normalisation flag and the exact
prefixed texts in encoding order.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import time
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

import numpy as np

from eval.atomic import write_bytes_atomic

logger = logging.getLogger(__name__)

# Bump when a change to the encoder alters embeddings that the fingerprint does not cover.
CACHE_FORMAT_VERSION = 1
# Temporary files older than this are left over from killed runs; writing a chunk takes seconds.
STALE_TEMPORARY_FILE_S = 3600.0


def _digest(payload: Mapping[str, Any]) -> str:
    text = json.dumps(payload, sort_keys=True, ensure_ascii=True)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class EmbeddingCache:
    """Finished embedding chunks of one model configuration, stored as ``.npy`` files.

    Args:
        root: the cache folder (``cache_dir`` in the run config).
        fingerprint: JSON-ready description of the model settings that change embeddings.
    """

    def __init__(self, root: Path, fingerprint: Mapping[str, Any]) -> None:
        self.fingerprint = {**fingerprint, "cache_format_version": CACHE_FORMAT_VERSION}
        self.folder = Path(root) / _digest(self.fingerprint)[:32]
        self._write_error: Optional[OSError] = None
        self._remove_stale_temporary_files()

    def chunk_key(self, texts: Sequence[str], *, normalize: bool) -> str:
        """Return the key of a chunk: a sha256 over the normalisation flag and each text with its length."""
        digest = hashlib.sha256(b"normalize=1;" if normalize else b"normalize=0;")
        for text in texts:
            # surrogatepass: JSON may carry lone surrogates ("\ud800"), which strict UTF-8 rejects.
            data = text.encode("utf-8", "surrogatepass")
            digest.update(len(data).to_bytes(8, "little"))
            digest.update(data)
        return digest.hexdigest()

    def chunk_path(self, key: str) -> Path:
        """Return the path of the chunk file with ``key``."""
        return self.folder / f"{key}.npy"

    def load(self, key: str, *, rows: int, dim: int) -> Optional[np.ndarray]:
        """Return the stored chunk, or None when it is absent or unreadable.

        A file that cannot be read, has another shape or dtype, or contains
        non-finite values is logged, deleted and reported as absent, so the
        chunk is encoded again.
        """
        path = self.chunk_path(key)
        if not path.is_file():
            return None
        try:
            embeddings = np.load(path, allow_pickle=False)
        except (OSError, ValueError, EOFError) as error:
            self._discard(path, f"it cannot be read ({error})")
            return None
        if embeddings.shape != (rows, dim) or embeddings.dtype != np.float32:
            self._discard(path, f"it holds {embeddings.shape} {embeddings.dtype}, expected ({rows}, {dim}) float32")
            return None
        if not np.isfinite(embeddings).all():
            self._discard(path, "it holds NaN or infinite values")
            return None
        return embeddings

    def store(self, key: str, embeddings: np.ndarray) -> None:
        """Write a finished chunk through a temporary file and a rename, so no reader sees half a file."""
        self._write(self.chunk_path(key), lambda handle: np.save(handle, embeddings, allow_pickle=False))

    def plan_path(self, texts: Sequence[str], *, normalize: bool) -> Path:
        """Return the path of the encoding plan of one encode call's unique texts."""
        return self.folder / f"plan-{self.chunk_key(texts, normalize=normalize)}.npz"

    def load_plan(self, texts: Sequence[str], *, normalize: bool) -> Optional[dict[str, Any]]:
        """Return the stored plan (length order, token and truncation counts), or None.

        With the plan, a cached encode call finds its chunks without tokenising
        the texts again to sort them by length.
        """
        path = self.plan_path(texts, normalize=normalize)
        if not path.is_file():
            return None
        try:
            with np.load(path, allow_pickle=False) as stored:
                plan = {"order": stored["order"], "tokens": int(stored["tokens"]), "at_max_length": int(stored["at_max_length"])}
        except (OSError, ValueError, KeyError, EOFError) as error:
            self._discard_plan(path, f"it cannot be read ({error})")
            return None
        if sorted(plan["order"].tolist()) != list(range(len(texts))):
            self._discard_plan(path, "its order is not a permutation of the texts")
            return None
        return plan

    def store_plan(self, texts: Sequence[str], *, normalize: bool, order: np.ndarray, tokens: int, at_max_length: int) -> None:
        """Store the length order and counts of one encode call's unique texts."""
        path = self.plan_path(texts, normalize=normalize)
        arrays = {"order": np.asarray(order, dtype=np.int64), "tokens": np.int64(tokens), "at_max_length": np.int64(at_max_length)}
        self._write(path, lambda handle: np.savez(handle, **arrays))

    def _write(self, path: Path, write: Any) -> None:
        """Write one cache file beside the folder's fingerprint.

        A cache that cannot be written does not stop the evaluation: the
        first failure is logged and later writes are skipped, so the run
        finishes without storing embeddings.
        """
        if self._write_error is not None:
            return
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            self._write_fingerprint()
            self._write_atomic(path, write)
        except OSError as error:
            self._write_error = error
            logger.warning(
                "Failed to write to the embedding cache %s (%s); the run goes on without storing embeddings. "
                "Make the folder writable or set cache_dir to another folder (cache_dir=null turns the cache off)",
                self.folder,
                error,
            )

    def _write_fingerprint(self) -> None:
        # Checked before every write: a folder deleted during a run is recreated with its fingerprint.
        path = self.folder / "fingerprint.json"
        if not path.is_file():
            text = json.dumps(self.fingerprint, indent=2, sort_keys=True) + "\n"
            self._write_atomic(path, lambda handle: handle.write(text.encode("utf-8")))

    def _write_atomic(self, path: Path, write: Any) -> None:
        buffer = io.BytesIO()
        write(buffer)
        write_bytes_atomic(path, buffer.getvalue())

    def _discard(
        self, path: Path, reason: str, *, kind: str = "embeddings", consequence: str = "encoding that chunk again"
    ) -> None:
        logger.warning("Ignoring cached %s %s because %s; %s", kind, path, reason, consequence)
        path.unlink(missing_ok=True)

    def _discard_plan(self, path: Path, reason: str) -> None:
        self._discard(path, reason, kind="encoding plan", consequence="the texts are tokenised again")

    def _remove_stale_temporary_files(self) -> None:
        if not self.folder.is_dir():
            return
        cutoff = time.time() - STALE_TEMPORARY_FILE_S
        for path in self.folder.glob(".*.tmp"):
            try:
                if path.stat().st_mtime < cutoff:
                    path.unlink()
            except FileNotFoundError:
                continue
