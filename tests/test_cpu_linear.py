"""oneDNN's packed linear layers (eval/cpu_linear.py) and how the encoder picks them."""

from __future__ import annotations

import copy
import shutil
from pathlib import Path
from typing import Optional

import numpy as np
import pytest
import torch
from transformers import AutoConfig, AutoModel, BertConfig, BertModel, DistilBertConfig, DistilBertModel

from eval import cpu_linear
from eval.config import ModelConfig
from eval.encoder import E5Encoder

pytestmark = pytest.mark.skipif(not cpu_linear.onednn_linear_available(), reason="this torch build has no oneDNN")

SENTENCES = ["the cat sat on the mat", "fish swim in the blue sea", "dog", "a red apple tree of the green sea of the cat"]


def tiny_encoder(folder: Path, *, cache_dir: Optional[Path] = None, **overrides: object) -> E5Encoder:
    settings = {"name": "tiny", "path": str(folder), "device": "cpu", "max_length": 64, "batch_size": 2, **overrides}
    return E5Encoder(ModelConfig(**settings), prefix_scheme="none", cache_dir=cache_dir)  # type: ignore[arg-type]


def packed_layers(model: torch.nn.Module) -> list[cpu_linear.PackedLinear]:
    return [module for module in model.modules() if isinstance(module, cpu_linear.PackedLinear)]


def test_packed_encoder_matches_own_layers(tiny_bert_dir: Path) -> None:
    own = tiny_encoder(tiny_bert_dir, onednn_linear=False)
    packed = tiny_encoder(tiny_bert_dir)

    expected = own.embed(SENTENCES)
    embeddings = packed.embed(SENTENCES)

    assert own.linear_kernel == cpu_linear.TORCH_KERNEL
    assert packed.linear_kernel == cpu_linear.ONEDNN_KERNEL
    assert not packed_layers(own.model)
    # 2 layers x (query, key, value, attention output, intermediate, output). The intermediate ones carry the GELU.
    layers = packed_layers(packed.model)
    assert len(layers) == 12
    assert sum(layer.gelu for layer in layers) == 2
    np.testing.assert_allclose(embeddings, expected, atol=1e-5)


def test_other_activations_not_fused() -> None:
    torch.manual_seed(0)
    config = BertConfig(vocab_size=50, hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64, hidden_act="relu")
    model = BertModel(config, add_pooling_layer=False).eval()
    reference = copy.deepcopy(model)
    input_ids = torch.randint(1, 50, (2, 9))

    assert cpu_linear.pack_linear_layers(model) is None

    intermediate = model.encoder.layer[0].intermediate
    assert isinstance(intermediate.dense, cpu_linear.PackedLinear)
    assert not intermediate.dense.gelu
    assert isinstance(intermediate.intermediate_act_fn, torch.nn.ReLU)
    with torch.inference_mode():
        packed = model(input_ids=input_ids).last_hidden_state
        expected = reference(input_ids=input_ids).last_hidden_state
    torch.testing.assert_close(packed, expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("model_type", sorted(cpu_linear.PACKABLE_MODEL_TYPES))
def test_packable_model_types(model_type: str) -> None:
    torch.manual_seed(0)
    config = AutoConfig.for_model(model_type, vocab_size=60, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64)
    model = AutoModel.from_config(config).eval()
    reference = copy.deepcopy(model)
    input_ids = torch.randint(5, 60, (2, 9))

    assert cpu_linear.pack_linear_layers(model) is None

    assert len(packed_layers(model)) == 12
    with torch.inference_mode():
        packed = model(input_ids=input_ids).last_hidden_state
        expected = reference(input_ids=input_ids).last_hidden_state
    torch.testing.assert_close(packed, expected, atol=1e-5, rtol=1e-5)


def test_other_model_types_keep_cache_warm(tiny_bert_dir: Path, tmp_path: Path) -> None:
    folder = tmp_path / "distilbert"
    shutil.copytree(tiny_bert_dir, folder)
    (folder / "config.json").unlink()
    (folder / "model.safetensors").unlink()
    config = DistilBertConfig(vocab_size=30, dim=32, n_layers=2, n_heads=2, hidden_dim=64, max_position_embeddings=64)
    DistilBertModel(config).save_pretrained(folder)

    cold = tiny_encoder(folder, cache_dir=tmp_path / "cache")
    assert cold.linear_kernel == cpu_linear.TORCH_KERNEL
    embeddings = cold.embed(SENTENCES)
    warm = tiny_encoder(folder, cache_dir=tmp_path / "cache")
    cached = warm.embed(SENTENCES)

    assert not warm.model_loaded
    np.testing.assert_array_equal(cached, embeddings)


def test_unpackable_models_left_alone() -> None:
    linear_only = torch.nn.Sequential(torch.nn.Linear(4, 4))
    assert "no `encoder` module" in cpu_linear.pack_linear_layers(linear_only)

    model = BertModel(BertConfig(vocab_size=50, hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64))
    model.to(torch.bfloat16)
    assert cpu_linear.pack_linear_layers(model) == "the weights are not float32 on the CPU"
    assert not packed_layers(model)


def test_failed_self_check_falls_back(tiny_bert_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A packed layer that is off by 0.01, as a changed private operator could be.
    packed_forward = cpu_linear.PackedLinear.forward
    monkeypatch.setattr(cpu_linear.PackedLinear, "forward", lambda self, hidden: packed_forward(self, hidden) + 0.01)
    encoder = tiny_encoder(tiny_bert_dir, cache_dir=tmp_path)
    planned_folder = encoder.cache.folder
    assert encoder.linear_kernel == cpu_linear.ONEDNN_KERNEL

    embeddings = encoder.embed(SENTENCES)

    assert encoder.linear_kernel == cpu_linear.TORCH_KERNEL
    assert not packed_layers(encoder.model)
    assert encoder.fingerprint()["linear_kernel"] == cpu_linear.TORCH_KERNEL
    assert encoder.cache.folder != planned_folder
    assert list(encoder.cache.folder.glob("*.npy"))
    np.testing.assert_array_equal(embeddings, tiny_encoder(tiny_bert_dir, onednn_linear=False).embed(SENTENCES))


def test_kernel_choice_follows_settings(tiny_bert_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    packed = tiny_encoder(tiny_bert_dir)
    switched_off = tiny_encoder(tiny_bert_dir, onednn_linear=False)
    bfloat16 = tiny_encoder(tiny_bert_dir, dtype="bfloat16")
    monkeypatch.setattr(cpu_linear, "onednn_linear_available", lambda: False)
    unavailable = tiny_encoder(tiny_bert_dir)

    assert packed.fingerprint()["linear_kernel"] == cpu_linear.ONEDNN_KERNEL
    for encoder in (switched_off, bfloat16, unavailable):
        assert encoder.fingerprint()["linear_kernel"] == cpu_linear.TORCH_KERNEL
