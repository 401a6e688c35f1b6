"""Encoder faults: NaN embeddings name their texts, out-of-memory halves the
batch, and the chunk cache returns the same bits as a fresh encode."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np
import pytest
import torch

from eval.config import ModelConfig
from eval.embedding_cache import EmbeddingCache
from eval.encoder import E5Encoder, EncodingOutOfMemoryError, NonFiniteEmbeddingError

WORDS = "the a of cat dog sat on mat fish swim sea blue red green tree".split()


def make_texts(count: int, seed: int = 0) -> list[str]:
    """Distinct short texts of varying length over the tiny vocabulary."""
    rng = np.random.default_rng(seed)
    texts = []
    for index in range(count):
        words = rng.choice(WORDS, size=int(rng.integers(1, 12)))
        texts.append(" ".join(words) + f" {index}")
    return texts


def tiny_encoder(path: Path, *, batch_size: int = 4, cache_dir: Optional[Path] = None, chunk_size: int = 8) -> E5Encoder:
    model_cfg = ModelConfig(
        name="tiny", path=str(path), device="cpu", max_length=64, prefix_scheme="none", batch_size=batch_size
    )
    return E5Encoder(model_cfg, cache_dir=cache_dir, chunk_size=chunk_size)


@pytest.fixture(scope="module")
def nan_bert_dir(tiny_bert_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny BERT with the input embedding of the word "apple" set to NaN."""
    from transformers import BertModel

    folder = tmp_path_factory.mktemp("nan-bert")
    for path in tiny_bert_dir.iterdir():
        shutil.copy(path, folder / path.name)
    model = BertModel.from_pretrained(folder)
    vocab = model.config.vocab_size
    from transformers import AutoTokenizer

    apple = AutoTokenizer.from_pretrained(folder).convert_tokens_to_ids("apple")
    assert 0 <= apple < vocab
    with torch.no_grad():
        model.embeddings.word_embeddings.weight[apple] = float("nan")
    model.save_pretrained(folder)
    return folder


def test_nan_embeddings_name_texts(nan_bert_dir: Path) -> None:
    encoder = tiny_encoder(nan_bert_dir)
    texts = ["the cat sat", "an apple tree", "fish swim", "red apple"]

    with pytest.raises(NonFiniteEmbeddingError) as caught:
        encoder.embed(texts, description="Encoding Test document")

    message = str(caught.value)
    assert "for 2 of 4 texts" in message
    assert "'an apple tree'" in message
    assert "'red apple'" in message
    assert "the cat sat" not in message
    assert isinstance(caught.value, FloatingPointError)


def test_nan_free_texts_still_encode(nan_bert_dir: Path) -> None:
    embeddings = tiny_encoder(nan_bert_dir).embed(["the cat sat", "fish swim"])

    assert np.isfinite(embeddings).all()


class OutOfMemoryAbove:
    """Wraps a model so that any batch larger than ``limit`` raises torch's out-of-memory error."""

    def __init__(self, model: Any, limit: int) -> None:
        self.model = model
        self.limit = limit
        self.batch_sizes: list[int] = []

    def __call__(self, **features: torch.Tensor) -> Any:
        size = int(features["input_ids"].shape[0])
        self.batch_sizes.append(size)
        if size > self.limit:
            raise torch.OutOfMemoryError(f"simulated: a batch of {size} does not fit")
        return self.model(**features)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.model, name)


def test_out_of_memory_halves_batch(tiny_bert_dir: Path, caplog: pytest.LogCaptureFixture) -> None:
    texts = make_texts(20)
    reference = tiny_encoder(tiny_bert_dir, batch_size=8).embed(texts)
    encoder = tiny_encoder(tiny_bert_dir, batch_size=8)
    wrapper = OutOfMemoryAbove(encoder.model, limit=2)
    encoder.model = wrapper

    with caplog.at_level(logging.WARNING, logger="eval.encoder"):
        embeddings = encoder.embed(texts, description="Encoding Test document")

    assert wrapper.batch_sizes[:3] == [8, 4, 2]
    assert max(wrapper.batch_sizes[3:]) == 2
    assert encoder.batch_size == 2
    assert encoder.stats.out_of_memory_retries == 2
    assert "retrying with batch size 4" in caplog.text
    assert "retrying with batch size 2" in caplog.text
    np.testing.assert_allclose(embeddings, reference, atol=1e-5)


def test_out_of_memory_at_batch_one(tiny_bert_dir: Path) -> None:
    encoder = tiny_encoder(tiny_bert_dir, batch_size=4)
    encoder.model = OutOfMemoryAbove(encoder.model, limit=0)

    with pytest.raises(EncodingOutOfMemoryError, match="single text of"):
        encoder.embed(make_texts(5))


def test_cache_reuses_identical_bits(tiny_bert_dir: Path, tmp_path: Path) -> None:
    texts = make_texts(50)
    uncached = tiny_encoder(tiny_bert_dir, chunk_size=16).embed(texts)

    first = tiny_encoder(tiny_bert_dir, cache_dir=tmp_path, chunk_size=16)
    stored = first.embed(texts)
    second = tiny_encoder(tiny_bert_dir, cache_dir=tmp_path, chunk_size=16)
    reused = second.embed(texts)

    assert np.array_equal(stored, uncached)
    assert np.array_equal(reused, uncached)
    assert first.stats.chunks_encoded == 4
    assert second.stats.chunks_reused == 4
    assert second.stats.chunks_encoded == 0


def test_fully_cached_run_skips_the_weights(tiny_bert_dir: Path, tmp_path: Path) -> None:
    texts = make_texts(30)
    expected = tiny_encoder(tiny_bert_dir, cache_dir=tmp_path, chunk_size=8).embed(texts)

    warm = tiny_encoder(tiny_bert_dir, cache_dir=tmp_path, chunk_size=8)
    reused = warm.embed(texts)

    assert np.array_equal(reused, expected)
    assert not warm.model_loaded
    assert warm.stats.chunks_reused == 4
    assert warm.effective_dtype == "float32"


def test_one_new_text_loads_the_weights(tiny_bert_dir: Path, tmp_path: Path) -> None:
    texts = make_texts(30)
    tiny_encoder(tiny_bert_dir, cache_dir=tmp_path, chunk_size=8).embed(texts)

    warm = tiny_encoder(tiny_bert_dir, cache_dir=tmp_path, chunk_size=8)
    warm.embed(texts + ["an unseen text"])

    assert warm.model_loaded
    assert warm.stats.chunks_encoded >= 1


def test_attention_fallback_moves_the_cache(tiny_bert_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import eval.encoder as encoder_module

    real_load_model = encoder_module.load_model

    def load_eager(*args: Any, **kwargs: Any) -> Any:
        model = real_load_model(*args, **{**kwargs, "attn_implementation": "eager"})
        return model

    monkeypatch.setattr(encoder_module, "load_model", load_eager)
    encoder = tiny_encoder(tiny_bert_dir, cache_dir=tmp_path, chunk_size=8)
    assert encoder.cache is not None
    planned_folder = encoder.cache.folder

    encoder.embed(make_texts(10))

    assert encoder.attn_implementation == "eager"
    assert encoder.fingerprint()["attn_implementation"] == "eager"
    assert encoder.cache.folder != planned_folder
    assert list(encoder.cache.folder.glob("*.npy"))
    assert not planned_folder.exists()


def test_bfloat16_on_cpu_stays_close_to_float32(tiny_bert_dir: Path) -> None:
    texts = make_texts(12)
    full = tiny_encoder(tiny_bert_dir).embed(texts)
    model_cfg = ModelConfig(name="tiny", path=str(tiny_bert_dir), device="cpu", max_length=64, prefix_scheme="none", dtype="bfloat16")
    half = E5Encoder(model_cfg)

    embeddings = half.embed(texts)

    assert half.effective_dtype == "bfloat16"
    assert embeddings.dtype == np.float32
    assert not np.array_equal(embeddings, full)
    assert (embeddings * full).sum(axis=1).min() > 0.99
    assert half.fingerprint()["dtype"] == "bfloat16"


def test_chunks_match_unchunked_batches(tiny_bert_dir: Path) -> None:
    # Chunks hold whole batches, so chunking never changes how a batch pads.
    texts = make_texts(37)
    one_chunk = tiny_encoder(tiny_bert_dir, batch_size=4, chunk_size=10_000).embed(texts)
    small_chunks = tiny_encoder(tiny_bert_dir, batch_size=4, chunk_size=5).embed(texts)

    assert np.array_equal(one_chunk, small_chunks)


def test_chunk_size_rounds_to_batches(tiny_bert_dir: Path) -> None:
    assert tiny_encoder(tiny_bert_dir, batch_size=4, chunk_size=5).chunk_size == 8
    assert tiny_encoder(tiny_bert_dir, batch_size=4, chunk_size=1).chunk_size == 4


def test_cache_key_separates_settings(tiny_bert_dir: Path, tmp_path: Path) -> None:
    encoder = tiny_encoder(tiny_bert_dir, cache_dir=tmp_path)
    cache = encoder.cache
    assert cache is not None

    assert cache.chunk_key(["a", "b"], normalize=True) != cache.chunk_key(["a", "b"], normalize=False)
    assert cache.chunk_key(["ab"], normalize=True) != cache.chunk_key(["a", "b"], normalize=True)
    assert cache.chunk_key(["query: x"], normalize=True) != cache.chunk_key(["passage: x"], normalize=True)
    other_length = tiny_encoder(tiny_bert_dir, cache_dir=tmp_path)
    other_length.max_length = 32
    assert EmbeddingCache(tmp_path, other_length.fingerprint()).folder != cache.folder


def test_corrupt_chunk_encoded_again(tiny_bert_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    texts = make_texts(16)
    first = tiny_encoder(tiny_bert_dir, cache_dir=tmp_path, chunk_size=8)
    expected = first.embed(texts)
    assert first.cache is not None
    chunk_files = sorted(first.cache.folder.glob("*.npy"))
    assert len(chunk_files) == 2
    chunk_files[0].write_bytes(chunk_files[0].read_bytes()[:50])

    second = tiny_encoder(tiny_bert_dir, cache_dir=tmp_path, chunk_size=8)
    with caplog.at_level(logging.WARNING, logger="eval.embedding_cache"):
        embeddings = second.embed(texts)

    assert np.array_equal(embeddings, expected)
    assert second.stats.chunks_reused == 1
    assert second.stats.chunks_encoded == 1
    assert "Ignoring cached embeddings" in caplog.text


def test_cache_paths_stay_inside_root(tmp_path: Path) -> None:
    cache = EmbeddingCache(tmp_path / "cache", {"model_id": "../../etc", "revision": "../.."})
    key = cache.chunk_key(["../../x"], normalize=True)

    path = cache.chunk_path(key).resolve()

    assert path.is_relative_to((tmp_path / "cache").resolve())
    assert path.parent.parent == (tmp_path / "cache").resolve()


def embed_after_damage(
    tiny_bert_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture, damage: Callable[[Path], None], count: int = 16
) -> tuple[np.ndarray, np.ndarray, E5Encoder]:
    """Fill a cache, let ``damage`` change its folder, and embed the same texts again.

    Returns the first embeddings, the second ones and the second encoder.
    """
    texts = make_texts(count)
    first = tiny_encoder(tiny_bert_dir, cache_dir=tmp_path, chunk_size=8)
    expected = first.embed(texts)
    assert first.cache is not None
    damage(first.cache.folder)

    second = tiny_encoder(tiny_bert_dir, cache_dir=tmp_path, chunk_size=8)
    with caplog.at_level(logging.WARNING, logger="eval.embedding_cache"):
        embeddings = second.embed(texts)
    return expected, embeddings, second


def test_garbled_plan_tokenised_again(tiny_bert_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    def garble_plan(folder: Path) -> None:
        (plan,) = folder.glob("plan-*.npz")
        plan.write_text("not a plan")

    expected, embeddings, second = embed_after_damage(tiny_bert_dir, tmp_path, caplog, garble_plan)

    assert np.array_equal(embeddings, expected)
    assert "Ignoring cached encoding plan" in caplog.text
    assert second.stats.chunks_reused == 2


def test_unwritable_cache_warns_once(tiny_bert_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    texts = make_texts(16)
    expected = tiny_encoder(tiny_bert_dir, chunk_size=8).embed(texts)
    # A regular file where the cache folder should be: every write fails with an OSError.
    blocker = tmp_path / "cache-file"
    blocker.write_text("not a folder")
    encoder = tiny_encoder(tiny_bert_dir, cache_dir=blocker, chunk_size=8)

    with caplog.at_level(logging.WARNING, logger="eval.embedding_cache"):
        embeddings = encoder.embed(texts)

    assert np.array_equal(embeddings, expected)
    assert encoder.stats.chunks_encoded == 2
    assert caplog.text.count("Failed to write to the embedding cache") == 1


def test_chunk_path_taken_by_folder(tiny_bert_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    def folder_at_chunk(folder: Path) -> None:
        (chunk,) = folder.glob("*.npy")
        chunk.unlink()
        chunk.mkdir()

    expected, embeddings, _ = embed_after_damage(tiny_bert_dir, tmp_path, caplog, folder_at_chunk, count=8)

    assert np.array_equal(embeddings, expected)
    assert "Failed to write to the embedding cache" in caplog.text


def test_deleted_cache_folder_gets_fingerprint(tiny_bert_dir: Path, tmp_path: Path) -> None:
    encoder = tiny_encoder(tiny_bert_dir, cache_dir=tmp_path, chunk_size=8)
    encoder.embed(make_texts(8))
    assert encoder.cache is not None
    shutil.rmtree(encoder.cache.folder)

    encoder.embed(make_texts(8, seed=1))

    assert (encoder.cache.folder / "fingerprint.json").is_file()
    assert len(list(encoder.cache.folder.glob("*.npy"))) == 1
