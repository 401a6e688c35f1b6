"""Prefix rules: which text an E5-style encoder prepends to each input.

One function, :func:`resolve_prefix`, maps (scheme, task type, task name,
prompt type) to the string put in front of every text. The encoder calls it,
and no other module contains a prefix.

Rules, checked in this order for each scheme:

- ``e5``: (1) documents of a task in ``DOCUMENTS_AS_QUERIES`` (Quora) get
  ``"query: "``; (2) documents of an asymmetric task type
  (``ASYMMETRIC_TASK_TYPES``: retrieval, reranking) get ``"passage: "``;
  (3) every other text, queries and all texts of STS, classification,
  clustering and the other symmetric types, gets ``"query: "``.
- ``e5-instruct``: (1) documents of an asymmetric task type get no prefix;
  (2) every other text gets the instruction.
- ``mteb``: MTEB's own E5 prompt table (``query`` -> ``"query: "``,
  ``document`` -> ``"passage: "``), looked up by MTEB's own rules, so a text
  without a prompt type (STS, classification, ...) gets no prefix.
- ``none``: no prefix.

"instruction" is ``"Instruct: {task description}\\nQuery: "`` with the task's
description taken from MTEB's task metadata, as multilingual-e5-large-instruct
was trained and evaluated.

The ``e5`` rows follow the official E5 evaluation scripts: "query: " and
"passage: " on asymmetric tasks and "query: " on every text of symmetric
tasks, classification and clustering. MTEB's E5 entries leave the latter
without a prefix; ``mteb`` reproduces that so either published number can be
matched.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Optional

if TYPE_CHECKING:
    from mteb.abstasks.task_metadata import TaskMetadata

QUERY = "query"
DOCUMENT = "document"

E5_QUERY_PREFIX = "query: "
E5_PASSAGE_PREFIX = "passage: "
E5_INSTRUCT_TEMPLATE = "Instruct: {instruction}\nQuery: "

# Task types in which a short query is matched against longer documents.
ASYMMETRIC_TASK_TYPES = frozenset(
    {"Retrieval", "Reranking", "InstructionRetrieval", "InstructionReranking"}
)

# Duplicate-question retrieval: the documents are questions, so the official E5
# scripts encode them with the query prefix.
DOCUMENTS_AS_QUERIES = frozenset({"QuoraRetrieval", "quora"})

# Classification features are used as logistic-regression inputs; the official
# E5 scripts leave them unnormalised.
CLASSIFICATION_TASK_TYPES = frozenset({"Classification", "MultilabelClassification"})


def resolve_prefix(
    scheme: str,
    *,
    task_type: str,
    task_name: str,
    prompt_type: Optional[str],
    instruction: str = "",
) -> str:
    """Return the prefix for one input text of a task.

    Args:
        scheme: ``e5``, ``e5-instruct``, ``mteb`` or ``none``.
        task_type: MTEB task type, for example ``Retrieval`` or ``STS``.
        task_name: MTEB task name, for example ``SciFact``.
        prompt_type: ``query``, ``document`` or None where MTEB gives none.
        instruction: task description, used by the ``e5-instruct`` scheme only.

    Raises:
        ValueError: for an unknown scheme.
    """
    is_document = prompt_type == DOCUMENT

    if scheme == "none":
        return ""

    if scheme == "e5":
        if is_document and task_name in DOCUMENTS_AS_QUERIES:
            return E5_QUERY_PREFIX
        if is_document and task_type in ASYMMETRIC_TASK_TYPES:
            return E5_PASSAGE_PREFIX
        return E5_QUERY_PREFIX

    if scheme == "e5-instruct":
        if is_document and task_type in ASYMMETRIC_TASK_TYPES:
            return ""
        return E5_INSTRUCT_TEMPLATE.format(instruction=instruction)

    if scheme == "mteb":
        return _mteb_e5_prefix(task_type=task_type, task_name=task_name, prompt_type=prompt_type)

    raise ValueError(f"unknown prefix scheme {scheme!r}; valid schemes: e5, e5-instruct, mteb, none")


def _mteb_e5_prefix(*, task_type: str, task_name: str, prompt_type: Optional[str]) -> str:
    # Delegates to MTEB's own prompt lookup with MTEB's own E5 prompt table, so
    # this scheme stays what MTEB does even when MTEB's rules change.
    from mteb.models.abs_encoder import get_prompt_name
    from mteb.models.model_implementations.e5_models import model_prompts
    from mteb.types import PromptType

    metadata = _MetadataView(name=task_name, type=task_type)
    mteb_prompt_type = PromptType(prompt_type) if prompt_type else None
    prompt_name = get_prompt_name(model_prompts, metadata, mteb_prompt_type)  # type: ignore[arg-type]
    return model_prompts[prompt_name] if prompt_name else ""


class _MetadataView:
    """The two fields of MTEB's ``TaskMetadata`` that its prompt lookup reads."""

    def __init__(self, name: str, type: str) -> None:  # noqa: A002  (MTEB's field name)
        self.name = name
        self.type = type


def task_instruction(task_metadata: "TaskMetadata") -> str:
    """Return the task description that instruction-tuned E5 models expect.

    MTEB's task metadata stores it as ``prompt`` (a string, or a dict keyed by
    prompt type); tasks without one fall back to MTEB's default for their type.
    """
    prompt = task_metadata.prompt
    if isinstance(prompt, dict):
        prompt = prompt.get(QUERY) or next(iter(prompt.values()), None)
    if prompt:
        return str(prompt)

    from mteb.abstasks.abstask import get_abstask_prompt

    return get_abstask_prompt(task_metadata.name)


def normalize_for_task(task_type: str, *, normalize: bool, normalize_classification: bool) -> bool:
    """Return whether embeddings are L2-normalised for a task of this type."""
    if task_type in CLASSIFICATION_TASK_TYPES:
        return normalize_classification
    return normalize
