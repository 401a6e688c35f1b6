"""Time the kernels that a MiniLM forward pass spends its FLOPs in, at the real shapes.

    python benchmarks/kernels.py --output docs/benchmarks/kernels.json

For all-MiniLM-L6-v2 (hidden 384, 12 heads of 32, feed-forward 1,536) it
reports GFLOP/s of:

- a 2048x2048 float32 matmul, the reference rate of benchmarks/peers.py;
- each linear layer shape on 4,096 tokens, with PyTorch's ``F.linear`` and
  with the packed oneDNN layer of :mod:`eval.cpu_linear`, and the
  feed-forward GELU and the residual add inside or after the matmul;
- SDPA attention on 16 texts of 256 tokens, with and without the boolean
  padding mask that transformers passes for padded batches.

These rates bound how fast the encoder can get in float32
(docs/BENCHMARKS.md).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn.functional as F

from eval.cpu_linear import PackedLinear

HIDDEN = 384
HEADS = 12
INTERMEDIATE = 1536
TOKENS = 4096
LAYER_SHAPES = ((HIDDEN, HIDDEN), (HIDDEN, INTERMEDIATE), (INTERMEDIATE, HIDDEN))


def seconds_per_call(function: Callable[[], Any], repeats: int) -> float:
    """Return the median seconds of ``repeats`` calls after three warm-up calls."""
    for _ in range(3):
        function()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


def matmul_rate(repeats: int) -> float:
    a = torch.randn(2048, 2048)
    b = torch.randn(2048, 2048)
    return 2 * 2048**3 / seconds_per_call(lambda: a @ b, repeats) / 1e9


def linear_rates(in_features: int, out_features: int, repeats: int) -> dict[str, float]:
    """Return GFLOP/s of one layer shape on TOKENS rows, per way of running it."""
    linear = torch.nn.Linear(in_features, out_features)
    packed = PackedLinear(linear)
    packed_gelu = PackedLinear(linear, gelu=True)
    rows = torch.randn(TOKENS, in_features)
    residual = torch.randn(TOKENS, out_features)
    weight, bias = linear.weight.detach(), linear.bias.detach()

    ways: dict[str, Callable[[], Any]] = {
        "F.linear": lambda: F.linear(rows, weight, bias),
        "packed": lambda: packed(rows),
    }
    if out_features == INTERMEDIATE:
        ways["F.linear then GELU"] = lambda: F.gelu(F.linear(rows, weight, bias))
        ways["packed with GELU inside"] = lambda: packed_gelu(rows)
    if out_features == HIDDEN:
        ways["packed then residual add"] = lambda: packed(rows) + residual
        # oneDNN's binary post-op adds the residual inside the matmul.
        ways["packed with residual add inside"] = lambda: torch.ops.mkldnn._linear_pointwise.binary(
            rows, residual, packed.packed_weight, packed.bias, "add"
        )

    flops = 2 * TOKENS * in_features * out_features
    with torch.inference_mode():
        return {name: round(flops / seconds_per_call(function, repeats) / 1e9, 1) for name, function in ways.items()}


def attention_rates(repeats: int, texts: int = 16, length: int = 256) -> dict[str, float]:
    """Return GFLOP/s of SDPA on ``texts`` texts of ``length`` tokens, without and with a padding mask."""
    head_dim = HIDDEN // HEADS
    query, key, value = (torch.randn(texts, HEADS, length, head_dim) for _ in range(3))
    # One token of padding per text: transformers then passes a boolean mask.
    mask = torch.ones(texts, 1, length, length, dtype=torch.bool)
    mask[..., -1] = False
    flops = 4 * texts * HEADS * length * length * head_dim

    ways = {
        "SDPA without mask": lambda: F.scaled_dot_product_attention(query, key, value),
        "SDPA with boolean mask": lambda: F.scaled_dot_product_attention(query, key, value, attn_mask=mask),
    }
    with torch.inference_mode():
        return {name: round(flops / seconds_per_call(function, repeats) / 1e9, 1) for name, function in ways.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=30, help="timed calls per kernel; the median counts")
    parser.add_argument("--output", type=Path, default=None, help="write the JSON summary here")
    args = parser.parse_args()

    report = {
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "matmul_2048_gflops": round(matmul_rate(args.repeats), 1),
        "linear_gflops": {f"{n_in}->{n_out}": linear_rates(n_in, n_out, args.repeats) for n_in, n_out in LAYER_SHAPES},
        "attention_gflops": attention_rates(args.repeats),
    }
    print(json.dumps(report, indent=2))
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
