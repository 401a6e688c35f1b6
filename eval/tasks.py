"""Task loading: turn a task config into MTEB task objects with their data.

``beir/<name>`` tasks take their metadata (name, type, main score, split)
from MTEB's registry and their data from a BEIR folder loaded with BEIR's
loader. ``mteb/<TaskName>`` tasks come from MTEB's registry with data from a
local folder of ``<split>.jsonl`` files or from the Hugging Face hub. This
module does not depend on any model.
"""

from __future__ import annotations

import difflib
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

from eval.beir_data import (
    DataError,
    EmptyDataError,
    InvalidFieldError,
    MissingFieldError,
    MissingFileError,
    check_beir_folder,
    download_beir,
    ensure_beir_folder,
    load_beir,
    read_jsonl,
    sha256_file,
)
from eval.hub import hub_offline, probe_hub_endpoint

if TYPE_CHECKING:
    from mteb.abstasks.abstask import AbsTask
    from mteb.abstasks.aggregated_task import AbsTaskAggregate

    from eval.config import TaskConfig

logger = logging.getLogger(__name__)

# Columns of MTEB's hub datasets that a local <split>.jsonl must have, by task type.
REQUIRED_COLUMNS = {
    "STS": ("sentence1", "sentence2", "score"),
    "Classification": ("text", "label"),
    "MultilabelClassification": ("text", "label"),
    "PairClassification": ("sentence1", "sentence2", "labels"),
    "Clustering": ("sentences", "labels"),
}


@dataclass
class PreparedTask:
    """An MTEB task with its data loaded, and where that data came from."""

    task: "AbsTask"
    data_source: str
    fingerprints: dict[str, str]
    per_query_scores: dict[str, dict[str, float]] = field(default_factory=dict)
    predictions: Any = None
    data_warnings: dict[str, int] = field(default_factory=dict)


@dataclass
class TaskPlan:
    """The tasks one task config runs; several for CQADupStack, combined by ``aggregate``."""

    config_name: str
    parts: list[PreparedTask]
    aggregate: Optional["AbsTaskAggregate"] = None

    @property
    def name(self) -> str:
        """The MTEB name the record is filed under."""
        if self.aggregate is not None:
            return self.aggregate.metadata.name
        return self.parts[0].task.metadata.name


def get_mteb_task(name: str, split: Optional[str] = None) -> "AbsTask":
    """Return a fresh MTEB task object, restricted to ``split`` when given.

    Raises:
        DataError: no task of that name is in MTEB's registry; the message lists close names.
    """
    import mteb

    try:
        if split:
            return mteb.get_task(name, eval_splits=[split])
        return mteb.get_task(name)
    except KeyError as error:
        known = [task.metadata.name for task in mteb.get_tasks()]
        close = difflib.get_close_matches(name, known, n=5, cutoff=0.6)
        hint = f"close names: {', '.join(close)}" if close else "no close name"
        raise DataError(
            f"unknown MTEB task {name!r} ({hint}); list all with "
            "`python -c \"import mteb; print([t.metadata.name for t in mteb.get_tasks()])\"`"
        ) from error


def prepare_task(task_cfg: "TaskConfig", data_dir: Path) -> TaskPlan:
    """Build the MTEB task objects for a task config, with data loaded.

    Raises:
        DataError: the task is unknown or its data cannot be found or read.
    """
    config_name = f"{task_cfg.source}/{task_cfg.name}"
    if task_cfg.source == "beir":
        return _prepare_beir(task_cfg, data_dir, config_name)
    return TaskPlan(config_name=config_name, parts=[_prepare_mteb(task_cfg, data_dir)])


def _prepare_beir(task_cfg: "TaskConfig", data_dir: Path, config_name: str) -> TaskPlan:
    if not task_cfg.mteb_name:
        raise DataError(f"task config {config_name} sets no mteb_name; add the MTEB task that scores it")
    split = task_cfg.split or "test"

    if not task_cfg.subtasks:
        folder = ensure_beir_folder(data_dir, task_cfg.name, split)
        part = _beir_part(task_cfg.mteb_name, folder, split, task_cfg.ignore_identical_ids)
        return TaskPlan(config_name=config_name, parts=[part])

    # CQADupStack: one download contains a folder per forum, each an MTEB task.
    root = data_dir / "beir" / task_cfg.name
    if not root.exists():
        download_beir(data_dir / "beir", task_cfg.name)
    parts = []
    for forum in task_cfg.subtasks:
        check_beir_folder(root / forum, split)
        mteb_name = f"CQADupstack{forum.capitalize()}Retrieval"
        parts.append(_beir_part(mteb_name, root / forum, split, task_cfg.ignore_identical_ids))
    aggregate = get_mteb_task(task_cfg.mteb_name)
    return TaskPlan(config_name=config_name, parts=parts, aggregate=aggregate)  # type: ignore[arg-type]


def _beir_part(mteb_name: str, folder: Path, split: str, ignore_identical_ids: Optional[bool]) -> PreparedTask:
    from datasets import Dataset

    data = load_beir(folder, split)
    task = get_mteb_task(mteb_name, split)

    document_ids = list(data.corpus)
    corpus = Dataset.from_dict(
        {
            "id": document_ids,
            "title": [data.corpus[doc_id]["title"] for doc_id in document_ids],
            "text": [data.corpus[doc_id]["text"] for doc_id in document_ids],
        }
    )
    query_ids = list(data.queries)
    queries = Dataset.from_dict({"id": query_ids, "text": [data.queries[qid] for qid in query_ids]})
    task.dataset = {
        "default": {
            split: {"corpus": corpus, "queries": queries, "relevant_docs": data.qrels, "top_ranked": None}
        }
    }
    task.data_loaded = True
    if ignore_identical_ids is not None:
        task.ignore_identical_ids = ignore_identical_ids

    return PreparedTask(
        task=task,
        data_source=f"beir-folder:{folder}",
        fingerprints=data.fingerprints,
        data_warnings=data.warnings.as_dict(),
    )


def _prepare_mteb(task_cfg: "TaskConfig", data_dir: Path) -> PreparedTask:
    task = get_mteb_task(task_cfg.name, task_cfg.split)
    folder = data_dir / "mteb" / task_cfg.name
    if folder.is_dir():
        return _load_local_mteb(task, folder)
    return _load_hub_mteb(task, folder)


def _load_local_mteb(task: "AbsTask", folder: Path) -> PreparedTask:
    from datasets import DatasetDict, load_dataset

    metadata = task.metadata
    if metadata.is_multilingual:
        raise DataError(
            f"local data for the multilingual task {metadata.name} is not supported ({folder}); "
            "remove the folder to load the task from the hub"
        )
    if metadata.type in {"Retrieval", "Reranking"}:
        raise DataError(
            f"local data for the retrieval task {metadata.name} must be a BEIR folder; "
            "use a task=beir/<name> config or remove the folder to load it from the hub"
        )

    needed_splits = list(task.eval_splits)
    train_split = getattr(task, "train_split", None)
    if metadata.type in {"Classification", "MultilabelClassification"} and train_split:
        needed_splits.append(train_split)
    files = {split: folder / f"{split}.jsonl" for split in dict.fromkeys(needed_splits)}
    missing = [str(path) for path in files.values() if not path.is_file()]
    if missing:
        raise MissingFileError(
            f"local data of {metadata.name} is missing {', '.join(missing)}; write one JSON line per example"
        )
    for path in files.values():
        _check_local_rows(task, path)

    dataset = DatasetDict(
        {split: load_dataset("json", data_files=str(path), split="train") for split, path in files.items()}
    )
    _check_columns(metadata.name, metadata.type, files, dataset)
    task.dataset = dataset
    task.dataset_transform()
    task.data_loaded = True

    fingerprints = {f"{split}.jsonl": sha256_file(path) for split, path in files.items()}
    logger.info(
        "Loaded %s from %s: %s",
        metadata.name,
        folder,
        ", ".join(f"{split} {len(rows)} rows" for split, rows in dataset.items()),
    )
    return PreparedTask(task=task, data_source=f"local-jsonl:{folder}", fingerprints=fingerprints)


def _check_local_rows(task: "AbsTask", path: Path) -> None:
    """Check every line of a local split file before ``datasets`` reads it.

    ``datasets`` reports a malformed line as an Arrow error without a line
    number, and it accepts labels and scores of any type. This pass names the
    line, the column and the value instead.

    Raises:
        DataError: one of its subclasses, naming the file, the line and the fix.
    """
    metadata = task.metadata
    required = REQUIRED_COLUMNS.get(metadata.type, ())
    first_label: Optional[tuple[int, Any]] = None
    rows = 0
    for line_number, row in read_jsonl(path):
        rows += 1
        missing = [column for column in required if column not in row]
        if missing:
            raise MissingFieldError(
                f"{path}, line {line_number} lacks column(s) {', '.join(missing)} that {metadata.type} task "
                f"{metadata.name} needs; found {', '.join(sorted(row)) or 'none'}"
            )
        if metadata.type == "STS":
            _check_sts_score(task, path, line_number, row["score"])
        elif metadata.type == "Classification":
            label = row["label"]
            _check_label(metadata.name, path, line_number, label)
            if first_label is None:
                first_label = (line_number, label)
            elif type(first_label[1]) is not type(label):
                raise InvalidFieldError(
                    f"{path}, line {line_number}: label {label!r} is a {type(label).__name__}, but the label "
                    f"{first_label[1]!r} on line {first_label[0]} is a {type(first_label[1]).__name__}; "
                    "use one type for all labels"
                )
    if rows == 0:
        raise EmptyDataError(f"{path} is empty; {metadata.name} needs one JSON line per example")


def _check_label(task_name: str, path: Path, line_number: int, label: Any) -> None:
    # bool is a subclass of int in Python, but a true/false label is almost
    # always a column mix-up, so it is rejected with the other non-label types.
    if isinstance(label, bool) or not isinstance(label, (int, str)):
        raise InvalidFieldError(
            f"{path}, line {line_number}: label {label!r} ({type(label).__name__}) is not an integer or a string; "
            f"{task_name} expects one class label per text, such as 11 or \"card_arrival\""
        )


def _check_sts_score(task: "AbsTask", path: Path, line_number: int, score: Any) -> None:
    low = getattr(task, "min_score", None)
    high = getattr(task, "max_score", None)
    if isinstance(score, bool) or not isinstance(score, (int, float)):
        raise InvalidFieldError(
            f"{path}, line {line_number}: score {score!r} ({type(score).__name__}) is not a number; "
            f"{task.metadata.name} expects a similarity score between {low} and {high}"
        )
    if score != score or (low is not None and score < low) or (high is not None and score > high):
        raise InvalidFieldError(
            f"{path}, line {line_number}: score {score!r} is outside the range [{low}, {high}] of "
            f"{task.metadata.name}; rescale the scores to that range"
        )


def _check_columns(task_name: str, task_type: str, files: dict[str, Path], dataset: Any) -> None:
    required = REQUIRED_COLUMNS.get(task_type, ())
    for split, rows in dataset.items():
        missing = [column for column in required if column not in rows.column_names]
        if missing:
            raise DataError(
                f"{files[split]} lacks column(s) {', '.join(missing)} that {task_type} task {task_name} needs; "
                f"found {', '.join(rows.column_names)}"
            )


def _load_hub_mteb(task: "AbsTask", folder: Path) -> PreparedTask:
    metadata = task.metadata
    if not hub_offline():
        unreachable = probe_hub_endpoint()
        if unreachable:
            raise DataError(
                f"no local data for {metadata.name} in {folder} and the hub cannot be reached: {unreachable}. "
                f"Put <split>.jsonl files with the columns of {metadata.dataset['path']} in {folder}, "
                "or set HF_HUB_OFFLINE=1 to use a cached copy"
            )
    try:
        task.load_data()
    except (OSError, ValueError, ConnectionError) as error:
        offline = " (HF_HUB_OFFLINE or HF_DATASETS_OFFLINE is set, so only the cache was read)" if hub_offline() else ""
        raise DataError(
            f"no local data for {metadata.name} in {folder}, and loading {metadata.dataset['path']} from the hub "
            f"or its cache failed{offline}: {error}. Put <split>.jsonl files with the columns of "
            f"{metadata.dataset['path']} in {folder}, or set data_dir (or EVAL_DATA_DIR) to a folder that "
            f"contains mteb/{metadata.name}/"
        ) from error
    revision = metadata.dataset.get("revision", "")
    return PreparedTask(
        task=task,
        data_source=f"hub:{metadata.dataset['path']}@{revision}",
        fingerprints={"hub_revision": str(revision)},
    )
