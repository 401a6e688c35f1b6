"""The E5 encoder: pooling, normalisation, batching, truncation, devices, and
agreement with sentence-transformers on the genuine MiniLM checkpoint."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from eval.config import ConfigError, ModelConfig
from eval.encoder import (
    E5Encoder,
    cls_pooling,
    cpu_has_native_bf16,
    keep_freed_memory,
    mean_pooling,
    select_device,
    select_dtype,
)

SENTENCES = [
    "the cat sat on the mat",
    "fish swim in the blue sea",
    "a red apple tree",
    "dog",
    "the green tree of the sea of the cat of the dog of the fish",
]


def tiny_encoder(folder: Path, **overrides: object) -> E5Encoder:
    settings = {"name": "tiny", "path": str(folder), "max_length": 64, "batch_size": 2, **overrides}
    return E5Encoder(ModelConfig(**settings), prefix_scheme="none")  # type: ignore[arg-type]


def test_mean_pooling_ignores_padding() -> None:
    states = torch.tensor([[[1.0, 2.0], [3.0, 4.0], [100.0, 100.0]]])
    mask = torch.tensor([[1, 1, 0]])
    pooled = mean_pooling(states, mask)
    assert torch.allclose(pooled, torch.tensor([[2.0, 3.0]]))


def test_cls_pooling_takes_first_token() -> None:
    states = torch.tensor([[[1.0, 2.0], [3.0, 4.0]]])
    pooled = cls_pooling(states, torch.tensor([[1, 1]]))
    assert torch.equal(pooled, torch.tensor([[1.0, 2.0]]))


def test_embeddings_are_unit_length(tiny_bert_dir: Path) -> None:
    embeddings = tiny_encoder(tiny_bert_dir).embed(SENTENCES)
    norms = np.linalg.norm(embeddings, axis=1)
    assert embeddings.dtype == np.float32
    assert np.allclose(norms, 1.0, atol=1e-5)


def test_normalisation_can_be_off(tiny_bert_dir: Path) -> None:
    embeddings = tiny_encoder(tiny_bert_dir).embed(SENTENCES, normalize=False)
    norms = np.linalg.norm(embeddings, axis=1)
    assert not np.allclose(norms, 1.0, atol=1e-3)


def test_batch_size_does_not_change_embeddings(tiny_bert_dir: Path) -> None:
    one_by_one = tiny_encoder(tiny_bert_dir, batch_size=1).embed(SENTENCES)
    batched = tiny_encoder(tiny_bert_dir, batch_size=4).embed(SENTENCES)
    assert np.allclose(one_by_one, batched, atol=1e-5)


def test_order_and_duplicates_preserved(tiny_bert_dir: Path) -> None:
    encoder = tiny_encoder(tiny_bert_dir)
    texts = [SENTENCES[1], SENTENCES[0], SENTENCES[1], SENTENCES[3]]
    embeddings = encoder.embed(texts)
    single = encoder.embed([SENTENCES[0]])
    assert np.allclose(embeddings[0], embeddings[2])
    assert np.allclose(embeddings[1], single[0], atol=1e-5)
    assert encoder.stats.unique_texts == 3 + 1


def test_cls_and_mean_differ(tiny_bert_dir: Path) -> None:
    mean = tiny_encoder(tiny_bert_dir, pooling="mean").embed(SENTENCES)
    cls = tiny_encoder(tiny_bert_dir, pooling="cls").embed(SENTENCES)
    assert not np.allclose(mean, cls, atol=1e-3)


def test_truncation_at_max_length(tiny_bert_dir: Path) -> None:
    encoder = tiny_encoder(tiny_bert_dir, max_length=8)
    long_text = " ".join(["cat"] * 40)
    truncated_text = " ".join(["cat"] * 6)
    embeddings = encoder.embed([long_text, truncated_text])
    assert np.allclose(embeddings[0], embeddings[1], atol=1e-5)
    assert encoder.stats.truncated == 2


def test_empty_input(tiny_bert_dir: Path) -> None:
    embeddings = tiny_encoder(tiny_bert_dir).embed([])
    assert embeddings.shape == (0, 32)


def test_float16_rejected_on_cpu() -> None:
    with pytest.raises(ConfigError, match="model.dtype=float16 is only supported on a GPU"):
        select_dtype("float16", torch.device("cpu"))
    assert select_dtype("float32", torch.device("cpu")) == torch.float32
    assert select_dtype("bfloat16", torch.device("cpu")) == torch.bfloat16


@pytest.mark.parametrize(
    ("flags", "native"),
    [("fpu avx512f amx_bf16 amx_tile", True), ("fpu avx512f avx512_bf16", True), ("fpu avx2 fma", False)],
)
def test_native_bf16_read_from_cpu_flags(tmp_path: Path, flags: str, native: bool) -> None:
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(f"processor\t: 0\nflags\t\t: {flags}\n")

    assert cpu_has_native_bf16(cpuinfo) is native
    assert cpu_has_native_bf16(tmp_path / "missing") is False


def test_emulated_bf16_warns(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    import eval.encoder as encoder_module

    monkeypatch.setattr(encoder_module, "cpu_has_native_bf16", lambda: False)
    with caplog.at_level("WARNING", logger="eval.encoder"):
        select_dtype("bfloat16", torch.device("cpu"))

    assert "bfloat16 is emulated" in caplog.text


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_requested_without_gpu() -> None:
    with pytest.raises(ConfigError, match="model.device=cuda was requested"):
        select_device("cuda")
    assert select_device("auto").type in {"cpu", "mps"}


def test_model_meta_for_mteb(tiny_bert_dir: Path) -> None:
    encoder = tiny_encoder(tiny_bert_dir)
    meta = encoder.mteb_model_meta
    assert meta.name == f"local/{tiny_bert_dir.name}"
    assert meta.revision == f"local-{encoder.checkpoint.weights_sha256[:12]}"
    assert meta.embed_dim == 32
    assert encoder.effective_dtype == "float32"


def test_matches_sentence_transformers(minilm_path: Path) -> None:
    """On the genuine all-MiniLM-L6-v2 our embeddings equal sentence-transformers' encode."""
    from sentence_transformers import SentenceTransformer

    texts = SENTENCES + [
        "Vitamin D deficiency is associated with an increased risk of multiple sclerosis.",
        " ".join(["A very long scientific abstract sentence about protein folding."] * 60),
    ]
    reference = SentenceTransformer(str(minilm_path), device="cpu").encode(texts, convert_to_numpy=True, batch_size=3)
    encoder = E5Encoder(ModelConfig(name="minilm-l6", path=str(minilm_path), max_length=256, batch_size=4), prefix_scheme="none")
    ours = encoder.embed(texts)

    cosine = np.sum(ours * reference, axis=1) / (np.linalg.norm(ours, axis=1) * np.linalg.norm(reference, axis=1))
    assert cosine.min() >= 0.99999


def test_cached_call_skips_tokenizer(tiny_bert_dir: Path, tmp_path: Path) -> None:
    """A fully cached encode call reads its length order from the stored plan."""
    settings = ModelConfig(name="tiny", path=str(tiny_bert_dir), max_length=64, batch_size=2)
    first = E5Encoder(settings, prefix_scheme="none", cache_dir=tmp_path, chunk_size=2)
    expected = first.embed(SENTENCES)

    second = E5Encoder(settings, prefix_scheme="none", cache_dir=tmp_path, chunk_size=2)
    calls = []
    original = second.tokenizer

    def recording_tokenizer(*args: object, **kwargs: object) -> object:
        calls.append(args)
        return original(*args, **kwargs)

    second.tokenizer = recording_tokenizer  # type: ignore[assignment]
    embeddings = second.embed(SENTENCES)

    assert calls == []
    assert np.array_equal(embeddings, expected)
    assert second.stats.tokens == first.stats.tokens
    assert second.stats.chunks_reused == 3
    assert second.stats.chunks_encoded == 0


def test_partial_cache_encodes_the_rest(tiny_bert_dir: Path, tmp_path: Path) -> None:
    settings = ModelConfig(name="tiny", path=str(tiny_bert_dir), max_length=64, batch_size=2)
    first = E5Encoder(settings, prefix_scheme="none", cache_dir=tmp_path, chunk_size=2)
    expected = first.embed(SENTENCES)
    chunk_files = sorted(path for path in first.cache.folder.glob("*.npy"))
    chunk_files[0].unlink()

    second = E5Encoder(settings, prefix_scheme="none", cache_dir=tmp_path, chunk_size=2)
    embeddings = second.embed(SENTENCES)
    assert np.array_equal(embeddings, expected)
    assert second.stats.chunks_encoded == 1
    assert second.stats.chunks_reused == 2


def test_token_budget_limits_batches(tiny_bert_dir: Path) -> None:
    encoder = tiny_encoder(tiny_bert_dir, batch_size=8, max_batch_tokens=24)
    shapes = []
    original = encoder._forward

    def recording_forward(features: dict, *, normalize: bool) -> np.ndarray:
        shapes.append(tuple(features["input_ids"].shape))
        return original(features, normalize=normalize)

    encoder._forward = recording_forward  # type: ignore[method-assign]
    texts = SENTENCES + ["cat", "dog sat", "the sea"]
    budgeted = encoder.embed(texts)
    reference = tiny_encoder(tiny_bert_dir, batch_size=8, max_batch_tokens=10_000).embed(texts)

    assert len(shapes) > 1
    for rows, tokens in shapes:
        assert rows == 1 or rows * tokens <= 24, shapes
    assert sum(rows for rows, _ in shapes) == len(texts)
    assert np.allclose(budgeted, reference, atol=1e-5)


def test_default_budget_on_cpu(tiny_bert_dir: Path) -> None:
    from eval.encoder import CPU_BATCH_TOKENS

    assert tiny_encoder(tiny_bert_dir).max_batch_tokens == CPU_BATCH_TOKENS


@pytest.mark.skipif(not Path("/lib/x86_64-linux-gnu/libc.so.6").exists() and not Path("/lib/aarch64-linux-gnu/libc.so.6").exists(), reason="not a glibc system")
def test_allocator_keeps_freed_memory() -> None:
    assert keep_freed_memory() is True


def test_no_c_library_means_no_tuning(monkeypatch: pytest.MonkeyPatch) -> None:
    import ctypes.util

    monkeypatch.setattr(ctypes.util, "find_library", lambda name: None)

    assert keep_freed_memory() is False
