"""One evaluation: load the encoder and the task, score with MTEB, write the record."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Optional

from filelock import FileLock, Timeout

from eval import config as config_module
from eval.results import (
    build_record,
    per_query_path,
    read_record,
    record_path,
    settings_slug,
    write_json_atomic,
)

if TYPE_CHECKING:
    from eval.config import RunConfig
    from eval.encoder import E5Encoder
    from eval.tasks import PreparedTask, TaskPlan

logger = logging.getLogger(__name__)

# pytrec_eval's names for MTEB's retrieval metrics, used to pick per-query scores.
PYTREC_MEASURES = {"ndcg_at": "ndcg_cut", "map_at": "map_cut", "recall_at": "recall", "precision_at": "P"}


@dataclasses.dataclass
class RunOutcome:
    """Outcome of a run: the record's path, its content and whether the run was skipped."""

    record_path: Path
    record: dict[str, Any]
    skipped: bool


class PhaseTimer:
    """Wall-clock seconds per named phase of a run."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        """Time the enclosed block and add it to ``name``."""
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = round(self.seconds.get(name, 0.0) + time.perf_counter() - start, 3)


def run(cfg: "RunConfig", overrides: Optional[list[str]] = None) -> RunOutcome:
    """Evaluate ``cfg.model`` on ``cfg.task`` and write the results record.

    A record that already exists for the same model, settings and task is
    returned as it is unless ``cfg.overwrite`` is set. An existing record
    computed from other weights or data files is an error. Runs that write the
    same record take turns through a lock file beside it, so a second run
    waits for the first and then returns the first run's record.
    """
    config_module.validate(cfg)
    timer = PhaseTimer()
    prefix_scheme = config_module.effective_prefix_scheme(cfg)

    with timer.phase("load_model"):
        from eval.encoder import E5Encoder

        encoder = E5Encoder(
            cfg.model,
            prefix_scheme=prefix_scheme,
            cache_dir=Path(cfg.cache_dir) if cfg.cache_dir else None,
            chunk_size=cfg.cache_chunk_size,
        )

    settings = settings_slug(
        prefix_scheme=prefix_scheme,
        pooling=cfg.model.pooling,
        max_length=encoder.max_length,
        dtype=encoder.effective_dtype,
        normalize=cfg.model.normalize,
        normalize_classification=cfg.model.normalize_classification,
    )
    task_record_name = cfg.task.mteb_name if cfg.task.source == "beir" and cfg.task.mteb_name else cfg.task.name
    path = record_path(
        Path(cfg.results_dir),
        model_id=encoder.checkpoint.model_id,
        revision=encoder.checkpoint.revision,
        settings=settings,
        task_name=task_record_name,
        split=cfg.task.split,
    )
    _check_writable(path.parent)
    with _record_lock(path):
        with timer.phase("load_data"):
            from eval.tasks import prepare_task

            plan = prepare_task(cfg.task, Path(cfg.data_dir))

        if path.exists() and not cfg.overwrite:
            return _existing(path, encoder, plan)

        with timer.phase("evaluate"):
            task_result, phases = _evaluate(encoder, plan, cfg.show_progress_bar)

        harness = _harness_section(cfg, overrides or [], encoder, plan, settings, timer.seconds, phases)
        record = build_record(task_result, harness)
        record["dataset_revision"] = _dataset_revision(plan, record["dataset_revision"])
        # The record is written last and marks the pair as finished. An old
        # record goes first, so a run killed between the two writes leaves a
        # sidecar without a record (re-run next time), never a new sidecar
        # beside an old record.
        path.unlink(missing_ok=True)
        write_json_atomic(per_query_path(path), _per_query_payload(plan, record))
        write_json_atomic(path, record)
    logger.info("Wrote %s", path)
    return RunOutcome(record_path=path, record=record, skipped=False)


def _existing(path: Path, encoder: "E5Encoder", plan: "TaskPlan") -> RunOutcome:
    """Return the finished record at ``path`` if it was computed from these weights, this data and these task settings.

    Raises:
        DataError: the record cannot be read, or it was computed from other
            weights, other data files or another split or id handling.
    """
    from eval.beir_data import DataError

    try:
        record = read_record(path)
    except ValueError as error:
        raise DataError(str(error)) from None
    harness = record["harness"]
    first_task = plan.parts[0].task
    fingerprints = {part.task.metadata.name: part.fingerprints for part in plan.parts}
    differences = []
    if harness["model"].get("weights_sha256") != encoder.checkpoint.weights_sha256:
        differences.append("model weights (weights_sha256)")
    if harness["task"].get("fingerprints") != fingerprints:
        differences.append("data files (task.fingerprints)")
    if harness["task"].get("split") != first_task.eval_splits[0]:
        differences.append(f"split (task.split={harness['task'].get('split')})")
    if harness["task"].get("ignore_identical_ids") != getattr(first_task, "ignore_identical_ids", None):
        differences.append(f"id handling (task.ignore_identical_ids={harness['task'].get('ignore_identical_ids')})")
    if differences:
        raise DataError(
            f"{path} exists but was computed from other {' and '.join(differences)}; "
            "pass overwrite=true to replace it, or set results_dir to another folder"
        )
    logger.info("A record for this configuration exists at %s; pass overwrite=true to run again", path)
    return RunOutcome(record_path=path, record=record, skipped=True)


def _dataset_revision(plan: "TaskPlan", hub_revision: str) -> str:
    """Return MTEB's hub revision for hub data, else a digest of the local files that were read.

    MTEB fills ``dataset_revision`` from the task's hub dataset even when the
    data came from a local folder; the record names what was evaluated instead.
    """
    if all(part.data_source.startswith("hub:") for part in plan.parts):
        return hub_revision
    fingerprints = json.dumps([part.fingerprints for part in plan.parts], sort_keys=True)
    return "local-" + hashlib.sha256(fingerprints.encode("utf-8")).hexdigest()[:16]


def _check_writable(folder: Path) -> None:
    """Fail before the evaluation, not after it, when the record cannot be written."""
    from eval.config import ConfigError

    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as error:
        raise ConfigError(
            f"cannot write results into {folder} ({error.strerror or error}); set results_dir to a writable folder"
        ) from error


def lock_path(record: Path) -> Path:
    """Return the lock file that serialises the runs writing ``record``."""
    return record.with_name(f".{record.name}.lock")


@contextmanager
def _record_lock(path: Path) -> Iterator[None]:
    # filelock uses fcntl/msvcrt locks, which the OS releases when a process
    # dies, so a killed run never leaves a stale lock behind.
    lock = FileLock(str(lock_path(path)))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        logger.info("Another run is writing %s; waiting for it to finish", path)
        lock.acquire()
    try:
        yield
    finally:
        lock.release()


def _evaluate(encoder: "E5Encoder", plan: "TaskPlan", show_progress_bar: bool) -> tuple[Any, list[dict[str, Any]]]:
    import mteb

    task_results = []
    phases: list[dict[str, Any]] = []
    for part in plan.parts:
        _capture_per_query_scores(part)
        with tempfile.TemporaryDirectory(prefix="eval-predictions-") as prediction_folder:
            # cache=None: MTEB's result cache would otherwise return an earlier
            # score for the same model name and revision instead of running.
            model_result = mteb.evaluate(
                _searcher(encoder) if _is_retrieval(part) else encoder,
                part.task,
                cache=None,
                overwrite_strategy="always",
                show_progress_bar=show_progress_bar,
                encode_kwargs={"batch_size": encoder.model_cfg.batch_size, "show_progress_bar": show_progress_bar},
                prediction_folder=None if _is_retrieval(part) else prediction_folder,
            )
            if not _is_retrieval(part):
                part.predictions = _read_predictions(Path(prediction_folder), part)
        task_result = model_result.task_results[0]
        task_results.append(task_result)
        for phase in task_result.evaluation_phases or []:
            phase_fields = phase if isinstance(phase, dict) else phase.model_dump(mode="json")
            phases.append({"task": part.task.metadata.name, **phase_fields})

    if plan.aggregate is not None:
        return plan.aggregate.combine_task_results(task_results), phases
    return task_results[0], phases


def _searcher(encoder: "E5Encoder") -> Any:
    """Wrap the encoder in MTEB's search wrapper with the exact chunked index.

    MTEB encodes queries and corpus through the encoder. The index replaces
    MTEB's default search, so ties are broken by document id and memory stays
    bounded by the chunk size.
    """
    from eval.search import ExactSearchIndex, ListIdSearchWrapper

    return ListIdSearchWrapper(encoder, index_backend=ExactSearchIndex())


def _is_retrieval(part: "PreparedTask") -> bool:
    return part.task.metadata.type in {"Retrieval", "Reranking"}


def _read_predictions(folder: Path, part: "PreparedTask") -> Any:
    # MTEB writes {subset: {split: predictions}} per task; this harness reads
    # the first subset of the evaluated split.
    files = list(folder.glob("*_predictions.json"))
    if not files:
        return None
    payload = json.loads(files[0].read_text(encoding="utf-8"))
    split = part.task.eval_splits[0]
    for subset, by_split in payload.items():
        if subset != "mteb_model_meta" and split in by_split:
            return by_split[split]
    return None


def _capture_per_query_scores(part: "PreparedTask") -> None:
    # MTEB computes per-query retrieval scores with pytrec_eval and passes them
    # to the task's ``task_specific_scores`` hook before averaging. Wrapping that
    # hook on this one task object keeps them without scoring twice.
    task = part.task
    original = getattr(task, "task_specific_scores", None)
    if original is None:
        return

    def keep_per_query(scores: dict[str, dict[str, float]], *args: Any, **kwargs: Any) -> dict[str, float]:
        part.per_query_scores = {query_id: dict(values) for query_id, values in scores.items()}
        return original(scores, *args, **kwargs)

    task.task_specific_scores = keep_per_query  # type: ignore[method-assign]


def _pytrec_measure(main_score: str) -> Optional[str]:
    for mteb_prefix, pytrec_prefix in PYTREC_MEASURES.items():
        if main_score.startswith(mteb_prefix + "_"):
            return f"{pytrec_prefix}_{main_score.rsplit('_', 1)[1]}"
    return None


def _per_query_payload(plan: "TaskPlan", record: dict[str, Any]) -> dict[str, Any]:
    """Build the sidecar: one score per query (or test item) whose mean is the main score.

    Retrieval stores the main metric per query, classification the fraction
    of MTEB's experiments that labelled each test item correctly, and STS the
    gold and predicted similarity of every pair (Spearman is not a mean).
    """
    first = plan.parts[0]
    main_score_name = first.task.metadata.main_score
    split = record["harness"]["task"]["split"]
    payload: dict[str, Any] = {
        "task_name": record["task_name"],
        "split": split,
        "metric": main_score_name,
        "kind": "none",
        "scores": {},
    }

    measure = _pytrec_measure(main_score_name)
    if _is_retrieval(first) and measure:
        payload["kind"] = "per_query"
        payload["pytrec_eval_measure"] = measure
        for part in plan.parts:
            key_prefix = f"{part.task.metadata.name}/" if len(plan.parts) > 1 else ""
            for query_id, values in part.per_query_scores.items():
                if measure in values:
                    payload["scores"][key_prefix + query_id] = values[measure]
        return payload

    task_type = first.task.metadata.type
    if task_type == "Classification" and main_score_name == "accuracy" and first.predictions:
        labels = list(first.task.dataset[split]["label"])
        experiments = [list(run) for run in first.predictions]
        if all(len(run) == len(labels) for run in experiments):
            payload["kind"] = "per_item"
            for index, label in enumerate(labels):
                correct = sum(1 for run in experiments if run[index] == label)
                payload["scores"][str(index)] = correct / len(experiments)
        return payload

    if task_type == "STS" and isinstance(first.predictions, dict):
        column = "cosine_scores" if main_score_name.startswith("cosine") else None
        if column and column in first.predictions:
            payload["kind"] = "sts_pairs"
            payload["gold"] = [float(score) for score in first.task.dataset[split]["score"]]
            payload["predicted"] = [float(score) for score in first.predictions[column]]
    # NOTE: other task types keep no per-item scores yet; their sidecar has kind "none".
    return payload


def _harness_section(
    cfg: "RunConfig",
    overrides: list[str],
    encoder: "E5Encoder",
    plan: "TaskPlan",
    settings: str,
    timings: dict[str, float],
    mteb_phases: list[dict[str, Any]],
) -> dict[str, Any]:
    from omegaconf import OmegaConf

    from eval.environment import environment, git_state

    first_task = plan.parts[0].task
    split = first_task.eval_splits[0]
    stats = encoder.stats
    return {
        "config": OmegaConf.to_container(OmegaConf.structured(cfg), resolve=True),
        "overrides": list(overrides),
        "settings": settings,
        "task": {
            "config": plan.config_name,
            "name": plan.name,
            "type": first_task.metadata.type,
            "split": split,
            "main_score_name": first_task.metadata.main_score,
            "ignore_identical_ids": getattr(first_task, "ignore_identical_ids", None),
            "subtasks": [part.task.metadata.name for part in plan.parts] if len(plan.parts) > 1 else [],
            "data_sources": {part.task.metadata.name: part.data_source for part in plan.parts},
            "fingerprints": {part.task.metadata.name: part.fingerprints for part in plan.parts},
            "data_warnings": {part.task.metadata.name: part.data_warnings for part in plan.parts if part.data_warnings},
        },
        "model": {
            "config_name": cfg.model.name,
            "model_id": encoder.checkpoint.model_id,
            "revision": encoder.checkpoint.revision,
            "declared_revision": encoder.checkpoint.declared_revision,
            "source": encoder.checkpoint.source,
            "weights_file": encoder.checkpoint.weights_file,
            "weights_sha256": encoder.checkpoint.weights_sha256,
            "dtype": encoder.effective_dtype,
            "device": str(encoder.device),
            "pooling": cfg.model.pooling,
            "normalize": cfg.model.normalize,
            "normalize_classification": cfg.model.normalize_classification,
            "max_length": encoder.max_length,
            "batch_size": cfg.model.batch_size,
            "max_batch_tokens": encoder.max_batch_tokens,
            "attn_implementation": encoder.attn_implementation,
            "linear_kernel": encoder.linear_kernel,
            "prefix_scheme": encoder.prefix_scheme,
            "prefixes": dict(stats.prefixes),
        },
        "encoding": {
            "texts": stats.texts,
            "unique_texts": stats.unique_texts,
            "tokens": stats.tokens,
            "texts_at_max_length": stats.truncated,
            "texts_by_prompt_type": dict(stats.prompt_type_counts),
            "final_batch_size": encoder.batch_size,
            "out_of_memory_retries": stats.out_of_memory_retries,
            "cache": {
                "dir": cfg.cache_dir,
                "folder": str(encoder.cache.folder) if encoder.cache is not None else None,
                "chunk_size": encoder.chunk_size,
                "chunks_reused": stats.chunks_reused,
                "chunks_encoded": stats.chunks_encoded,
                "model_loaded": encoder.model_loaded,
            },
        },
        "environment": environment(),
        "git": git_state(),
        "timings": {**timings, "total": round(sum(timings.values()), 3)},
        "mteb_phases": mteb_phases,
    }
