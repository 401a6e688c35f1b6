"""Load a checkpoint by config name or folder, and rank candidate passages against a query.

The page's "Try a model" tab calls these functions; they hold no Gradio code,
so tests call them directly. Similarity is the dot product of L2-normalised
embeddings from :meth:`eval.encoder.E5Encoder.embed`, that is cosine
similarity.
"""

from __future__ import annotations

import functools
import logging
import os
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from eval import prefixes
from eval.checkpoint import VOCABULARY_FILES, WEIGHT_FILES
from eval.config import ConfigError, ModelConfig, load_model_config, model_config_names

if TYPE_CHECKING:
    from eval.encoder import E5Encoder

logger = logging.getLogger(__name__)

# With these limits a request is at most 33 texts, one batch at the default
# batch_size of 64, and 2000 characters of English are roughly 400 to 500
# tokens, near E5's max_length of 512.
DEFAULT_MAX_CANDIDATES = 32
DEFAULT_MAX_CHARS = 2000

MODEL_RULE = "model"
RETRIEVAL = "retrieval"
SYMMETRIC = "symmetric"
NO_PREFIX = "none"
PREFIX_MODES = (MODEL_RULE, RETRIEVAL, SYMMETRIC, NO_PREFIX)

# Task types that stand for each prefix mode in eval.prefixes: a query matched
# against passages is retrieval, and two texts of the same kind are STS.
_MODE_TASK_TYPES = {RETRIEVAL: "Retrieval", SYMMETRIC: "STS"}
_PAGE_TASK_NAME = "webui"

RANKING_COLUMNS = ("rank", "cosine similarity", "candidate", "encoded text")
# Scores on the page are rounded to this many decimals.
SCORE_DECIMALS = 4


class InputError(ValueError):
    """The query or candidates are missing or over a limit; the message names the change to make."""


@dataclass(frozen=True)
class Prefixes:
    """The strings put in front of the query and of every candidate passage."""

    query: str
    passage: str


@functools.lru_cache(maxsize=1)
def retrieval_instruction() -> str:
    """Return MTEB's description of MSMARCO, the web-search instruction for e5-instruct models.

    It reads "Given a web search query, retrieve relevant passages that answer
    the query" in mteb 2.26.
    """
    import mteb

    return prefixes.task_instruction(mteb.get_task("MSMARCO").metadata)


def prefixes_for_mode(mode: str, model_scheme: str) -> Prefixes:
    """Return the query and passage prefixes of a prefix mode.

    ``retrieval`` gives E5's ``"query: "`` and ``"passage: "``, ``symmetric``
    gives ``"query: "`` on both sides, and ``none`` gives empty strings.
    ``model`` applies the loaded model's own prefix scheme (``model_scheme``)
    to a retrieval setting: a query against passages.

    Raises:
        ValueError: unknown mode or scheme.
    """
    if mode == MODEL_RULE:
        scheme, task_type = model_scheme, "Retrieval"
    elif mode in _MODE_TASK_TYPES:
        scheme, task_type = "e5", _MODE_TASK_TYPES[mode]
    elif mode == NO_PREFIX:
        scheme, task_type = "none", "Retrieval"
    else:
        raise ValueError(f"unknown prefix mode {mode!r}; valid modes: {', '.join(PREFIX_MODES)}")

    instruction = retrieval_instruction() if scheme == "e5-instruct" else ""

    def resolve(prompt_type: str) -> str:
        return prefixes.resolve_prefix(
            scheme,
            task_type=task_type,
            task_name=_PAGE_TASK_NAME,
            prompt_type=prompt_type,
            instruction=instruction,
        )

    return Prefixes(query=resolve(prefixes.QUERY), passage=resolve(prefixes.DOCUMENT))


def page_model_names() -> list[str]:
    """Return the model config names that the page loads by name.

    ``local`` is left out because it needs a folder: the page takes the folder
    path itself instead.
    """
    return [name for name in model_config_names() if name != "local"]


def model_config_for(reference: str) -> ModelConfig:
    """Build the model config for a config name (``minilm-l6``) or a checkpoint folder path.

    A value from :func:`page_model_names` is a config name. Anything else that
    looks like a path becomes ``ModelConfig(name="local", path=...)`` with the
    defaults of ``configs/model/local.yaml`` (E5 prefixes, mean pooling,
    max_length 512).

    Raises:
        ConfigError: the value is empty, an unknown name, a folder that does not
            exist, or a folder without the files of a checkpoint.
    """
    reference = reference.strip()
    names = page_model_names()
    if not reference:
        raise ConfigError(f"enter a model config name ({', '.join(names)}) or the path of a checkpoint folder")
    if reference in names:
        return load_model_config(reference)

    looks_like_path = os.sep in reference or "/" in reference or reference.startswith(("~", "."))
    folder = Path(os.path.expanduser(reference)).resolve()
    if not looks_like_path and not folder.exists():
        raise ConfigError(
            f"unknown model config {reference!r}; enter one of {', '.join(names)} or the path of a checkpoint folder"
        )
    if not folder.is_dir():
        raise ConfigError(
            f"checkpoint folder {str(folder)!r} does not exist or is not a folder; enter the path of a folder "
            "with config.json, the tokenizer files and model.safetensors, or a model config name"
        )
    # NOTE: "does not exist" versus "is not a checkpoint" still reveals whether a server path exists.
    check_checkpoint_files(folder)
    return ModelConfig(name="local", path=str(folder))


def check_checkpoint_files(folder: Path) -> None:
    """Raise ConfigError naming the checkpoint files that ``folder`` lacks.

    The message never lists what the folder does contain. A page served with
    ``--host 0.0.0.0`` has no login, so such a list would show the contents of
    any server folder to anyone on the network. Checking here also keeps the
    loader's own errors, which do list a folder's files, off the page.

    Raises:
        ConfigError: config.json, a weights file or a tokenizer vocabulary is missing.
    """
    missing = []
    if not (folder / "config.json").is_file():
        missing.append("config.json")
    if not any((folder / name).is_file() for name in WEIGHT_FILES):
        missing.append(f"a weights file ({' or '.join(WEIGHT_FILES)})")
    if not any((folder / name).is_file() for name in VOCABULARY_FILES):
        missing.append(f"a tokenizer vocabulary (one of {', '.join(VOCABULARY_FILES)})")
    if missing:
        raise ConfigError(
            f"folder {str(folder)!r} is not a checkpoint, because it is missing {'; '.join(missing)}. "
            "Enter the folder of a saved transformers checkpoint, or a model config name"
        )


class ModelStore:
    """Encoders loaded by the page, shared by all browser sessions.

    Loading takes seconds to minutes, so each checkpoint is loaded once and
    kept; beyond ``capacity`` models the least recently used one is dropped.
    """

    def __init__(self, capacity: int = 2) -> None:
        if capacity < 1:
            raise ValueError(f"invalid model store capacity {capacity}; it must be at least 1")
        self.capacity = capacity
        self._encoders: OrderedDict[str, "E5Encoder"] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, reference: str) -> "E5Encoder":
        """Return the encoder for a config name or folder path, loading it on first use.

        Raises:
            ConfigError: invalid reference or model settings.
            CheckpointError: the checkpoint cannot be found or loaded.
        """
        from eval.encoder import E5Encoder

        model_cfg = model_config_for(reference)
        key = model_cfg.path or model_cfg.name
        with self._lock:
            if key in self._encoders:
                self._encoders.move_to_end(key)
                return self._encoders[key]

            logger.info("Loading model %s for the web page", key)
            encoder = E5Encoder(model_cfg)
            # A broken weights file then fails here, when the user loads the
            # model, rather than at the first ranking.
            encoder.load_weights()
            self._encoders[key] = encoder
            while len(self._encoders) > self.capacity:
                dropped, _ = self._encoders.popitem(last=False)
                logger.info("Dropped model %s from the web page's store (capacity %d)", dropped, self.capacity)
            return encoder


@dataclass
class Ranking:
    """Candidates ranked by cosine similarity to the query, with the texts that were encoded."""

    table: pd.DataFrame
    encoded_query: str
    truncated: int


def parse_candidates(text: str) -> list[str]:
    """Split the candidates box into passages: one per line, blank lines dropped."""
    return [line.strip() for line in text.splitlines() if line.strip()]


def check_inputs(query: str, candidates: list[str], *, max_candidates: int, max_chars: int) -> None:
    """Raise InputError when the query or candidates are missing or over the page's limits."""
    if not query.strip():
        raise InputError("enter a query")
    if not candidates:
        raise InputError("enter at least one candidate passage, one per line")
    if len(candidates) > max_candidates:
        raise InputError(
            f"too many candidates: {len(candidates)} lines, the maximum is {max_candidates}; "
            f"remove {len(candidates) - max_candidates} of them"
        )
    if len(query) > max_chars:
        raise InputError(f"the query has {len(query)} characters, the maximum is {max_chars}; shorten it")
    for number, candidate in enumerate(candidates, start=1):
        if len(candidate) > max_chars:
            raise InputError(
                f"candidate {number} has {len(candidate)} characters, the maximum is {max_chars} per text; shorten it"
            )


def rank_candidates(encoder: "E5Encoder", query: str, candidates: list[str], prefix: Prefixes) -> Ranking:
    """Encode the prefixed query and candidates and rank the candidates by cosine similarity.

    Ties keep the order in which the candidates were entered.
    """
    encoded_query = prefix.query + query.strip()
    encoded_candidates = [prefix.passage + candidate for candidate in candidates]

    truncated_before = encoder.stats.truncated
    embeddings = encoder.embed([encoded_query, *encoded_candidates], normalize=True)
    truncated = encoder.stats.truncated - truncated_before

    scores = embeddings[1:] @ embeddings[0]
    order = np.argsort(-scores, kind="stable")
    table = pd.DataFrame(
        {
            RANKING_COLUMNS[0]: np.arange(1, len(order) + 1),
            RANKING_COLUMNS[1]: np.round(scores[order].astype(np.float64), SCORE_DECIMALS),
            RANKING_COLUMNS[2]: [candidates[i] for i in order],
            RANKING_COLUMNS[3]: [encoded_candidates[i] for i in order],
        }
    )
    return Ranking(table=table, encoded_query=encoded_query, truncated=truncated)
