"""Faults during a run: interrupted writes, re-runs, concurrent runs on one
results folder, and a run killed mid-corpus that resumes from its cache."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Iterator

import pytest

from eval.config import compose_run_config
from eval.results import per_query_path, read_record, write_json_atomic
from eval.run import lock_path, run

REPO = Path(__file__).resolve().parents[1]
WORDS = "the a of cat dog sat on mat fish swim sea blue red green apple tree".split()


def write_synthetic_beir(data_dir: Path, documents: int, queries: int = 30, seed: int = 0) -> Path:
    """Write ``<data_dir>/beir/scifact`` with short random documents over the tiny vocabulary."""
    rng = random.Random(seed)
    folder = data_dir / "beir" / "scifact"
    (folder / "qrels").mkdir(parents=True, exist_ok=True)
    with (folder / "corpus.jsonl").open("w", encoding="utf-8") as handle:
        for index in range(documents):
            text = " ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 9)))
            handle.write(json.dumps({"_id": f"d{index}", "title": rng.choice(WORDS), "text": text}) + "\n")
    with (folder / "queries.jsonl").open("w", encoding="utf-8") as handle:
        for index in range(queries):
            text = " ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 4)))
            handle.write(json.dumps({"_id": f"q{index}", "text": text}) + "\n")
    with (folder / "qrels" / "test.tsv").open("w", encoding="utf-8") as handle:
        handle.write("query-id\tcorpus-id\tscore\n")
        for index in range(queries):
            for doc in rng.sample(range(documents), 2):
                handle.write(f"q{index}\td{doc}\t1\n")
    return data_dir


def overrides_for(tiny_bert_dir: Path, data_dir: Path, results_dir: Path, *extra: str) -> list[str]:
    return [
        "task=beir/scifact",
        "model=local",
        f"model.path={tiny_bert_dir}",
        "model.device=cpu",
        "model.batch_size=16",
        f"data_dir={data_dir}",
        f"results_dir={results_dir}",
        "show_progress_bar=false",
        *extra,
    ]


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread() -> Iterator[None]:
    """Encode with one thread here and in the CLI runs.

    Matrix products may sum in another order with another thread count, so
    equal thread counts keep embeddings equal bit for bit. One thread also
    keeps the tiny model from waiting on a busy machine's other threads.
    """
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def start_cli(overrides: list[str], tmp_path: Path, name: str) -> subprocess.Popen[str]:
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
        "PYTHONUNBUFFERED": "1",
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
    }
    command = [sys.executable, "-m", "eval", *overrides, f"hydra.run.dir={tmp_path / ('hydra-' + name)}"]
    return subprocess.Popen(
        command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1
    )


# --- atomic writes -----------------------------------------------------------


def test_failed_write_keeps_old_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "Task.json"
    write_json_atomic(path, {"version": "old"})

    def interrupted_fsync(descriptor: int) -> None:
        # The new content is written to the temporary file, not yet renamed.
        raise KeyboardInterrupt

    monkeypatch.setattr("eval.atomic.os.fsync", interrupted_fsync)
    with pytest.raises(KeyboardInterrupt):
        write_json_atomic(path, {"version": "new"})
    monkeypatch.undo()

    assert json.loads(path.read_text(encoding="utf-8")) == {"version": "old"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["Task.json"]


KILLED_WRITER = """
import sys
from pathlib import Path
from eval.results import write_json_atomic
path = Path(sys.argv[1])
big = ["x" * 1000] * 2000
print("ready", flush=True)
index = 0
while True:
    write_json_atomic(path, {"index": index, "filler": big})
    index += 1
"""


def test_killed_writer_never_truncates(tmp_path: Path) -> None:
    path = tmp_path / "Task.json"
    write_json_atomic(path, {"index": -1})

    for delay in (0.2, 0.45, 0.7):
        writer = subprocess.Popen([sys.executable, "-c", KILLED_WRITER, str(path)], cwd=REPO, stdout=subprocess.PIPE, text=True)
        assert writer.stdout is not None
        assert writer.stdout.readline().strip() == "ready"
        time.sleep(delay)
        writer.send_signal(signal.SIGKILL)
        writer.wait(timeout=30)

        payload = json.loads(path.read_text(encoding="utf-8"))
        assert isinstance(payload["index"], int)


def test_concurrent_writers_leave_whole_files(tmp_path: Path) -> None:
    path = tmp_path / "Task.json"
    write_json_atomic(path, {"writer": -1, "filler": []})
    stop = threading.Event()
    seen: list[int] = []
    errors: list[BaseException] = []

    def write(writer: int) -> None:
        for _ in range(30):
            write_json_atomic(path, {"writer": writer, "filler": [writer] * 20_000})

    def read() -> None:
        while not stop.is_set():
            try:
                seen.append(json.loads(path.read_text(encoding="utf-8"))["writer"])
            except BaseException as error:  # noqa: BLE001 - any failure to parse is the finding
                errors.append(error)

    reader = threading.Thread(target=read)
    reader.start()
    writers = [threading.Thread(target=write, args=(index,)) for index in range(4)]
    for thread in writers:
        thread.start()
    for thread in writers:
        thread.join()
    stop.set()
    reader.join()

    assert errors == []
    assert seen
    assert json.loads(path.read_text(encoding="utf-8"))["writer"] in range(4)
    assert not list(tmp_path.glob(".*.tmp"))


# --- re-runs --------------------------------------------------------------------


@pytest.fixture(scope="module")
def small_beir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_synthetic_beir(tmp_path_factory.mktemp("small-beir"), documents=60, queries=8)


def test_rerun_skips_finished_pair(
    tiny_bert_dir: Path, small_beir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import eval.run

    overrides = overrides_for(tiny_bert_dir, small_beir, tmp_path / "results", "cache_dir=null")
    first = run(compose_run_config(overrides), overrides)

    def fail(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("a skipped run must not evaluate")

    # The data is loaded to compare its fingerprints with the record's, but
    # the evaluation is skipped.
    monkeypatch.setattr(eval.run, "_evaluate", fail)
    second = run(compose_run_config(overrides), overrides)

    assert not first.skipped
    assert second.skipped
    assert second.record_path == first.record_path
    assert second.record == first.record


def test_overwrite_runs_again(tiny_bert_dir: Path, small_beir: Path, tmp_path: Path) -> None:
    overrides = overrides_for(tiny_bert_dir, small_beir, tmp_path / "results", "cache_dir=null")
    first = run(compose_run_config(overrides), overrides)
    again = run(compose_run_config([*overrides, "overwrite=true"]), [*overrides, "overwrite=true"])

    assert not again.skipped
    assert again.record["date"] >= first.record["date"]
    assert again.record["harness"]["overrides"][-1] == "overwrite=true"
    assert read_record(again.record_path)["harness"]["overrides"][-1] == "overwrite=true"


def test_interrupted_overwrite_drops_old_record(
    tiny_bert_dir: Path, small_beir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import eval.run as run_module

    overrides = overrides_for(tiny_bert_dir, small_beir, tmp_path / "results", "cache_dir=null")
    first = run(compose_run_config(overrides), overrides)
    real_write = run_module.write_json_atomic

    def fail_on_record(path: Path, payload: Any) -> None:
        if path == first.record_path:
            raise KeyboardInterrupt
        real_write(path, payload)

    monkeypatch.setattr(run_module, "write_json_atomic", fail_on_record)
    with pytest.raises(KeyboardInterrupt):
        run(compose_run_config([*overrides, "overwrite=true"]), [*overrides, "overwrite=true"])
    monkeypatch.undo()

    # No record means "not finished": the next run evaluates again instead of
    # trusting an old record beside a new sidecar.
    assert not first.record_path.exists()
    rerun = run(compose_run_config(overrides), overrides)
    assert not rerun.skipped


def test_data_warnings_in_record(tiny_bert_dir: Path, tmp_path: Path) -> None:
    data_dir = write_synthetic_beir(tmp_path / "data", documents=40, queries=6)
    qrels = data_dir / "beir" / "scifact" / "qrels" / "test.tsv"
    with qrels.open("a", encoding="utf-8") as handle:
        handle.write("q0\tno-such-doc\t1\nno-such-query\td1\t1\n")
    with (data_dir / "beir" / "scifact" / "queries.jsonl").open("a", encoding="utf-8") as handle:
        handle.write(json.dumps({"_id": "unjudged", "text": "cat"}) + "\n")
    overrides = overrides_for(tiny_bert_dir, data_dir, tmp_path / "results", "cache_dir=null")

    outcome = run(compose_run_config(overrides), overrides)

    warnings = outcome.record["harness"]["task"]["data_warnings"]["SciFact"]
    assert warnings["qrels_unknown_documents"] == 1
    assert warnings["qrels_unknown_queries"] == 1
    assert warnings["queries_without_qrels"] == 1


def test_long_document_truncated_and_counted(tiny_bert_dir: Path, tmp_path: Path) -> None:
    data_dir = write_synthetic_beir(tmp_path / "data", documents=40, queries=6)
    with (data_dir / "beir" / "scifact" / "corpus.jsonl").open("a", encoding="utf-8") as handle:
        handle.write(json.dumps({"_id": "long", "title": "", "text": "cat " * 5000}) + "\n")
    overrides = overrides_for(tiny_bert_dir, data_dir, tmp_path / "results", "cache_dir=null")

    outcome = run(compose_run_config(overrides), overrides)

    encoding = outcome.record["harness"]["encoding"]
    assert encoding["texts_at_max_length"] >= 1
    assert outcome.record["harness"]["model"]["max_length"] == 64


# --- concurrent runs and a killed run ------------------------------------------------


@pytest.fixture(scope="module")
def large_beir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_synthetic_beir(tmp_path_factory.mktemp("large-beir"), documents=3000, queries=30)


def test_run_waits_for_lock_then_skips(tiny_bert_dir: Path, small_beir: Path, tmp_path: Path) -> None:
    from filelock import FileLock

    # An in-process run writes the record that the "other run" will have produced.
    reference_dir = tmp_path / "reference"
    reference_overrides = overrides_for(tiny_bert_dir, small_beir, reference_dir, "cache_dir=null")
    reference = run(compose_run_config(reference_overrides), reference_overrides)
    results = tmp_path / "results"
    target = results / reference.record_path.relative_to(reference_dir)
    target.parent.mkdir(parents=True)

    # This test plays the first run: it holds the record's lock while a second
    # run starts, then finishes its record and lets go.
    lock = FileLock(str(lock_path(target)))
    lock.acquire()
    try:
        process = start_cli(overrides_for(tiny_bert_dir, small_beir, results, "cache_dir=null"), tmp_path, "second")
        assert process.stdout is not None
        seen = []
        for line in process.stdout:
            seen.append(line)
            if "Another run is writing" in line:
                break
        assert process.poll() is None, "".join(seen[-20:])
        write_json_atomic(per_query_path(target), json.loads(per_query_path(reference.record_path).read_text()))
        write_json_atomic(target, reference.record)
        written = target.read_bytes()
    finally:
        lock.release()

    output = "".join(seen) + process.communicate(timeout=300)[0]
    assert process.returncode == 0, output[-3000:]
    assert "existing record" in output
    assert target.read_bytes() == written
    assert not list(results.rglob("*.tmp"))


def test_killed_run_resumes_from_cache(tiny_bert_dir: Path, large_beir: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    chunk_option = "cache_chunk_size=16"
    reference_overrides = overrides_for(tiny_bert_dir, large_beir, tmp_path / "reference", "cache_dir=null", chunk_option)
    reference = run(compose_run_config(reference_overrides), reference_overrides)

    overrides = overrides_for(tiny_bert_dir, large_beir, tmp_path / "results", f"cache_dir={cache}", chunk_option)
    process = start_cli(overrides, tmp_path, "killed")
    assert process.stdout is not None
    seen = []
    for line in process.stdout:
        seen.append(line)
        if "Encoding SciFact document: chunk 5/" in line:
            process.send_signal(signal.SIGKILL)
            break
    process.wait(timeout=60)
    assert process.returncode == -signal.SIGKILL, "".join(seen[-20:])

    total_chunks = -(-3000 // 16)
    stored = len(list(cache.rglob("*.npy")))
    assert stored >= 5
    assert stored < total_chunks, "the run finished the corpus before it was killed"
    assert not list((tmp_path / "results").rglob("SciFact.json"))

    resumed = run(compose_run_config(overrides), overrides)

    cache_stats = resumed.record["harness"]["encoding"]["cache"]
    assert cache_stats["chunks_reused"] >= 5
    assert cache_stats["chunks_encoded"] > 0
    assert resumed.record["scores"] == reference.record["scores"]
    resumed_per_query = json.loads(per_query_path(resumed.record_path).read_text(encoding="utf-8"))
    reference_per_query = json.loads(per_query_path(reference.record_path).read_text(encoding="utf-8"))
    assert resumed_per_query["scores"] == reference_per_query["scores"]


def test_cli_bad_input_one_line(tiny_bert_dir: Path, tmp_path: Path) -> None:
    data_dir = write_synthetic_beir(tmp_path / "data", documents=5, queries=2)
    corpus = data_dir / "beir" / "scifact" / "corpus.jsonl"
    lines = corpus.read_text(encoding="utf-8").splitlines(keepends=True)
    lines[1] = '{"_id": "d1", "text": "cut off\n'
    corpus.write_text("".join(lines), encoding="utf-8")

    process = start_cli(overrides_for(tiny_bert_dir, data_dir, tmp_path / "results"), tmp_path, "bad-input")
    output = process.communicate(timeout=300)[0]

    assert process.returncode == 1, output[-3000:]
    assert f"error: {corpus}, line 2, column" in output
    assert "Traceback" not in output
    assert not (tmp_path / "results").exists() or not list((tmp_path / "results").rglob("*.json"))
