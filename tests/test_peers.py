"""The peer benchmark's FLOP count and summary (benchmarks/peers.py)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode
from transformers import BertConfig, BertModel

PEERS_PATH = Path(__file__).resolve().parents[1] / "benchmarks" / "peers.py"


@pytest.fixture(scope="module")
def peers():
    spec = importlib.util.spec_from_file_location("peers", PEERS_PATH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("length", [1, 7, 40])
def test_forward_flops_match_counter(peers, length):
    # The counter has no FLOP formula for SDPA's CPU kernel, so the model uses eager attention.
    config = BertConfig(
        vocab_size=100, hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128, attn_implementation="eager"
    )
    model = BertModel(config, add_pooling_layer=False).eval()
    input_ids = torch.randint(1, 100, (1, length))

    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        model(input_ids=input_ids, attention_mask=torch.ones_like(input_ids))

    counted = peers.forward_flops([length], layers=2, hidden=64, intermediate=128)
    assert counted == counter.get_total_flops()


def test_forward_flops_add_over_texts(peers):
    sizes = {"layers": 6, "hidden": 384, "intermediate": 1536}

    together = peers.forward_flops([256, 12], **sizes)

    assert together == peers.forward_flops([256], **sizes) + peers.forward_flops([12], **sizes)


def _report(wall, evaluate, encode=None, score=0.5, tokens=None):
    phases = {"load_model": 0.1, "evaluate": evaluate}
    if encode is not None:
        phases["encode"] = encode
    report = {"wall_s": wall, "phases": phases, "peak_rss": 2**30, "score": score}
    if tokens is not None:
        report["tokens"] = tokens
    return report


def test_summary_prefers_encoding_phase(peers):
    runs = {"harness": [_report(12.0, 10.0, encode=8.0), _report(14.0, 12.0, encode=8.0)], "sts": [_report(6.0, 4.0)]}
    matmul = {"gflops": 100.0, "gflops_bf16": 400.0}
    count = {"tokens": 4000, "flops": 4e11}

    summary = peers.summarise(runs, matmul, count)

    harness = summary["harness"]
    assert harness["wall_s_median"] == 13.0
    assert harness["encode_phase"] == "encoding"
    assert harness["tokens_per_s"] == 500
    assert harness["encode_gflops"] == 50.0
    assert harness["encode_fraction_of_matmul"] == 0.5
    assert summary["sts"]["encode_phase"] == "evaluate"
    assert summary["sts"]["encode_gflops"] == 100.0


def test_summary_flags_differing_scores(peers):
    runs = {"mteb": [_report(5.0, 4.0, score=0.645081), _report(5.0, 4.0, score=0.64442)]}

    summary = peers.summarise(runs, {"gflops": 1.0, "gflops_bf16": 1.0}, {"tokens": 1, "flops": 1.0})

    assert summary["mteb"]["scores_identical"] is False


def test_token_mismatch_raises(peers):
    runs = {"harness": [_report(1.0, 1.0, tokens=999)]}

    with pytest.raises(RuntimeError, match="999 tokens but the FLOP count covers 1000"):
        peers.check_token_count(runs, {"tokens": 1000, "flops": 1.0})


def test_encode_phase_skips_scoring(peers):
    phases = [
        {"name": "Encoding queries", "start": 0.0, "end": 1.0},
        {"name": "Searching corpus", "start": 1.0, "end": 5.0},
        {"name": "Scoring", "start": 5.0, "end": 5.5},
    ]

    assert peers.encode_phase(phases) == {"encode": 5.0}
    assert peers.encode_phase([{"name": "Scoring", "start": 0.0, "end": 1.0}]) == {}
