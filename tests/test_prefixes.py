"""Prefix rules: the rule table itself, and the exact strings that reach the
tokenizer when MTEB's real evaluators run each task type."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from eval.prefixes import (
    E5_INSTRUCT_TEMPLATE,
    E5_PASSAGE_PREFIX,
    E5_QUERY_PREFIX,
    normalize_for_task,
    resolve_prefix,
)

SYMMETRIC_TYPES = [
    "STS",
    "PairClassification",
    "Classification",
    "MultilabelClassification",
    "Clustering",
    "Summarization",
    "BitextMining",
]


@pytest.mark.parametrize("task_type", ["Retrieval", "Reranking"])
def test_e5_asymmetric_query_and_passage(task_type: str) -> None:
    query = resolve_prefix("e5", task_type=task_type, task_name="SciFact", prompt_type="query")
    document = resolve_prefix("e5", task_type=task_type, task_name="SciFact", prompt_type="document")
    assert query == "query: "
    assert document == "passage: "


@pytest.mark.parametrize("task_type", SYMMETRIC_TYPES)
@pytest.mark.parametrize("prompt_type", [None, "query", "document"])
def test_e5_symmetric_types_use_query(task_type: str, prompt_type: str | None) -> None:
    prefix = resolve_prefix("e5", task_type=task_type, task_name="AnyTask", prompt_type=prompt_type)
    assert prefix == "query: "


@pytest.mark.parametrize("task_name", ["QuoraRetrieval", "quora"])
def test_e5_quora_documents_as_queries(task_name: str) -> None:
    prefix = resolve_prefix("e5", task_type="Retrieval", task_name=task_name, prompt_type="document")
    assert prefix == "query: "


@pytest.mark.parametrize("task_type", ["Retrieval", "Reranking"])
def test_mteb_scheme_asymmetric(task_type: str) -> None:
    assert resolve_prefix("mteb", task_type=task_type, task_name="SciFact", prompt_type="query") == "query: "
    assert resolve_prefix("mteb", task_type=task_type, task_name="SciFact", prompt_type="document") == "passage: "


@pytest.mark.parametrize("task_type", SYMMETRIC_TYPES)
def test_mteb_scheme_no_prefix_without_prompt_type(task_type: str) -> None:
    assert resolve_prefix("mteb", task_type=task_type, task_name="STSBenchmark", prompt_type=None) == ""


def test_mteb_scheme_quora_documents_get_passage() -> None:
    prefix = resolve_prefix("mteb", task_type="Retrieval", task_name="QuoraRetrieval", prompt_type="document")
    assert prefix == "passage: "


def test_instruct_scheme() -> None:
    instruction = "Given a scientific claim, retrieve documents that support or refute the claim"
    query = resolve_prefix("e5-instruct", task_type="Retrieval", task_name="SciFact", prompt_type="query", instruction=instruction)
    document = resolve_prefix("e5-instruct", task_type="Retrieval", task_name="SciFact", prompt_type="document", instruction=instruction)
    sts = resolve_prefix("e5-instruct", task_type="STS", task_name="STSBenchmark", prompt_type=None, instruction="Retrieve semantically similar text.")
    assert query == f"Instruct: {instruction}\nQuery: "
    assert document == ""
    assert sts == "Instruct: Retrieve semantically similar text.\nQuery: "


@pytest.mark.parametrize("task_type", ["Retrieval", "STS", "Classification"])
@pytest.mark.parametrize("prompt_type", [None, "query", "document"])
def test_none_scheme_is_empty(task_type: str, prompt_type: str | None) -> None:
    assert resolve_prefix("none", task_type=task_type, task_name="X", prompt_type=prompt_type) == ""


def test_unknown_scheme_rejected() -> None:
    with pytest.raises(ValueError, match="unknown prefix scheme 'e6'"):
        resolve_prefix("e6", task_type="STS", task_name="X", prompt_type=None)


def test_classification_unnormalised_by_default() -> None:
    assert normalize_for_task("Classification", normalize=True, normalize_classification=False) is False
    assert normalize_for_task("MultilabelClassification", normalize=True, normalize_classification=False) is False
    assert normalize_for_task("Classification", normalize=True, normalize_classification=True) is True
    assert normalize_for_task("STS", normalize=True, normalize_classification=False) is True
    assert normalize_for_task("Retrieval", normalize=False, normalize_classification=True) is False


# Strings handed to the tokenizer, through MTEB's evaluators.


class RecordingTokenizer:
    """Wraps a tokenizer and records every list of texts it is called with."""

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer
        self.calls: list[list[str]] = []

    def __call__(self, texts: list[str], *args: Any, **kwargs: Any) -> Any:
        self.calls.append(list(texts))
        return self.tokenizer(texts, *args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.tokenizer, name)

    @property
    def texts(self) -> list[str]:
        return [text for call in self.calls for text in call]


def make_encoder(tiny_bert_dir: Path, scheme: str) -> Any:
    from eval.config import ModelConfig
    from eval.encoder import E5Encoder

    encoder = E5Encoder(ModelConfig(name="tiny", path=str(tiny_bert_dir), max_length=64, batch_size=8), prefix_scheme=scheme)
    encoder.tokenizer = RecordingTokenizer(encoder.tokenizer)
    return encoder


MOCK_TASKS = {
    "Retrieval": "MockRetrievalTask",
    "Reranking": "MockRerankingTask",
    "STS": "MockSTSTask",
    "PairClassification": "MockPairClassificationTask",
    "Classification": "MockClassificationTask",
    "MultilabelClassification": "MockMultilabelClassification",
    "Clustering": "LegacyMockClusteringFastTask",
    "Summarization": "MockSummarizationTask",
    "BitextMining": "MockBitextMiningTask",
}

# (scheme, task type) -> set of prefixes expected on the tokenizer's inputs.
EXPECTED_PREFIXES = {
    "e5": {"Retrieval": {"query: ", "passage: "}, "Reranking": {"query: ", "passage: "}, "other": {"query: "}},
    "mteb": {"Retrieval": {"query: ", "passage: "}, "Reranking": {"query: ", "passage: "}, "other": {""}},
    "none": {"Retrieval": {""}, "Reranking": {""}, "other": {""}},
}


def split_prefix(text: str) -> tuple[str, str]:
    for prefix in (E5_QUERY_PREFIX, E5_PASSAGE_PREFIX):
        if text.startswith(prefix):
            return prefix, text[len(prefix) :]
    return "", text


def run_mock_task(encoder: Any, task_class_name: str) -> None:
    import mteb
    from mteb.mocks import mock_tasks

    task = getattr(mock_tasks, task_class_name)()
    mteb.evaluate(encoder, task, cache=None, overwrite_strategy="always", show_progress_bar=False)


@pytest.mark.parametrize("scheme", ["e5", "mteb", "none"])
@pytest.mark.parametrize("task_type", list(MOCK_TASKS))
def test_tokenizer_inputs_per_task_type(tiny_bert_dir: Path, scheme: str, task_type: str) -> None:
    encoder = make_encoder(tiny_bert_dir, scheme)
    run_mock_task(encoder, MOCK_TASKS[task_type])

    texts = encoder.tokenizer.texts
    assert texts, f"{task_type}: the tokenizer received no text"
    expected = EXPECTED_PREFIXES[scheme].get(task_type, EXPECTED_PREFIXES[scheme]["other"])
    seen = set()
    for text in texts:
        prefix, rest = split_prefix(text)
        seen.add(prefix)
        assert split_prefix(rest)[0] == "", f"prefix applied twice: {text!r}"
    assert seen == expected


def test_retrieval_exact_strings(tiny_bert_dir: Path, tmp_path: Path) -> None:
    """Documents reach the tokenizer as "passage: " + (title + " " + text).strip()."""
    from tests.beir_fixtures import write_beir_folder

    from eval.config import TaskConfig
    from eval.tasks import prepare_task

    corpus = {
        "d1": {"title": "Blue sea", "text": "fish swim in the sea"},
        "d2": {"title": "", "text": "the cat sat on the mat"},
        "d3": {"title": None, "text": "a red apple tree"},
    }
    queries = {"q1": "where do fish swim", "q2": "cat on mat"}
    qrels = {"q1": {"d1": 1}, "q2": {"d2": 1}}
    write_beir_folder(tmp_path / "beir" / "scifact", corpus, queries, qrels)

    plan = prepare_task(TaskConfig(source="beir", name="scifact", mteb_name="SciFact", split="test"), tmp_path)
    encoder = make_encoder(tiny_bert_dir, "e5")
    import mteb

    mteb.evaluate(encoder, plan.parts[0].task, cache=None, overwrite_strategy="always", show_progress_bar=False)

    texts = set(encoder.tokenizer.texts)
    assert "query: where do fish swim" in texts
    assert "query: cat on mat" in texts
    assert "passage: Blue sea fish swim in the sea" in texts
    assert "passage: the cat sat on the mat" in texts
    assert "passage: a red apple tree" in texts
    assert len(texts) == 5


def test_instruct_strings_reach_tokenizer(tiny_bert_dir: Path) -> None:
    encoder = make_encoder(tiny_bert_dir, "e5-instruct")
    run_mock_task(encoder, "MockRetrievalTask")

    queries = [text for text in encoder.tokenizer.texts if text.startswith("Instruct: ")]
    documents = [text for text in encoder.tokenizer.texts if not text.startswith("Instruct: ")]
    assert queries
    assert documents
    assert all("\nQuery: " in text for text in queries)
    assert E5_INSTRUCT_TEMPLATE.startswith("Instruct: ")
