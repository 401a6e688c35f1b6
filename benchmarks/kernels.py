"""Time the kernels that a MiniLM forward pass spends its FLOPs in, at the real shapes.

    python benchmarks/kernels.py --output docs/benchmarks/kernels.json

For all-MiniLM-L6-v2 (hidden 384, 12 heads of 32, feed-forward 1,536) it
reports GFLOP/s of:

- a 2048x2048 float32 matmul, measured as benchmarks/peers.py measures its reference rate;
- each linear layer shape on 4,096 tokens, with PyTorch's ``F.linear`` and
  with the packed oneDNN layer of :mod:`eval.cpu_linear`, and the
  feed-forward GELU and the residual add inside or after the matmul;
- SDPA attention on 16 texts of 256 tokens, with and without the boolean
  padding mask that transformers passes for padded batches.

These rates bound how fast the encoder can get in float32
(docs/BENCHMARKS.md). On a shared virtual machine they vary by up to a
fifth between measurements, so the script measures ``--rounds`` times and
reports each kernel's best rate, the one that a floor on run time needs.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn.functional as F

# peers.py sits beside this script, and Python puts the script's folder on sys.path.
from peers import worker_matmul

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


def rates(ways: dict[str, Callable[[], Any]], flops: int, repeats: int) -> dict[str, float]:
    """Return the GFLOP/s of each way of doing the same ``flops``."""
    with torch.inference_mode():
        return {name: round(flops / seconds_per_call(function, repeats) / 1e9, 1) for name, function in ways.items()}


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

    return rates(ways, 2 * TOKENS * in_features * out_features, repeats)


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
    return rates(ways, flops, repeats)


def measure_round(repeats: int) -> dict[str, Any]:
    """Measure every kernel once: the 2048x2048 matmul, the linear layer shapes and attention."""
    return {
        "matmul_2048_gflops": round(worker_matmul()["gflops"], 1),
        "linear_gflops": {f"{n_in}->{n_out}": linear_rates(n_in, n_out, repeats) for n_in, n_out in LAYER_SHAPES},
        "attention_gflops": attention_rates(repeats),
    }


def best_rates(rounds: list[Any]) -> Any:
    """Return the structure of one round with each rate replaced by its maximum over ``rounds``."""
    first = rounds[0]
    if not isinstance(first, dict):
        return max(rounds)
    return {key: best_rates([measured[key] for measured in rounds]) for key in first}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=30, help="timed calls per kernel, of which the median counts")
    parser.add_argument("--rounds", type=int, default=5, help="measurements of every kernel, of which the best is reported")
    parser.add_argument("--output", type=Path, default=None, help="write the JSON summary here")
    args = parser.parse_args()

    rounds = [measure_round(args.repeats) for _ in range(args.rounds)]
    report = {"threads": torch.get_num_threads(), "torch": torch.__version__, "rounds": args.rounds, **best_rates(rounds)}
    print(json.dumps(report, indent=2))
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
