"""Bad local MTEB data, bad configuration and unsafe checkpoints end in one
clear error; names that reach file paths stay inside their folder."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
import torch

from eval.beir_data import InvalidFieldError, InvalidJsonError, MissingFieldError, MissingFileError
from eval.checkpoint import (
    VOCABULARY_FILES,
    CheckpointError,
    count_parameters,
    load_config,
    load_model,
    load_tokenizer,
    resolve_checkpoint,
)
from eval.config import ConfigError, ModelConfig, TaskConfig, compose_run_config, validate
from eval.encoder import E5Encoder
from eval.results import path_component, record_path
from eval.tasks import prepare_task


def write_rows(path: Path, rows: list[object]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join((row if isinstance(row, str) else json.dumps(row)) + "\n" for row in rows), encoding="utf-8")


STS = TaskConfig(source="mteb", name="STSBenchmark", split="test")
BANKING = TaskConfig(source="mteb", name="Banking77Classification", split="test")
PAIR = {"sentence1": "a cat sat", "sentence2": "a dog sat", "score": 2.5}


# --- local MTEB data -------------------------------------------------------------


def test_local_split_file_missing(tmp_path: Path) -> None:
    (tmp_path / "mteb" / "STSBenchmark").mkdir(parents=True)

    with pytest.raises(MissingFileError, match=r"missing .*STSBenchmark/test\.jsonl"):
        prepare_task(STS, tmp_path)


def test_local_column_missing_names_line(tmp_path: Path) -> None:
    write_rows(tmp_path / "mteb" / "STSBenchmark" / "test.jsonl", [PAIR, {"sentence1": "x", "score": 1.0}])

    with pytest.raises(MissingFieldError) as caught:
        prepare_task(STS, tmp_path)

    assert "test.jsonl, line 2 lacks column(s) sentence2" in str(caught.value)


@pytest.mark.parametrize("score, expected", [(7.5, "outside the range [0, 5]"), (-1, "outside the range"), ("high", "is not a number"), (None, "is not a number")])
def test_local_sts_score_checked(tmp_path: Path, score: object, expected: str) -> None:
    write_rows(tmp_path / "mteb" / "STSBenchmark" / "test.jsonl", [PAIR, {**PAIR, "score": score}])

    with pytest.raises(InvalidFieldError) as caught:
        prepare_task(STS, tmp_path)

    assert "line 2" in str(caught.value)
    assert expected in str(caught.value)


def test_local_invalid_json_names_line(tmp_path: Path) -> None:
    write_rows(tmp_path / "mteb" / "STSBenchmark" / "test.jsonl", [PAIR, PAIR, '{"sentence1": "a", '])

    with pytest.raises(InvalidJsonError, match=r"test\.jsonl, line 3"):
        prepare_task(STS, tmp_path)


@pytest.mark.parametrize(
    "labels, expected",
    [
        ([1, 2.5], "label 2.5 (float) is not an integer or a string"),
        ([1, True], "label True (bool)"),
        ([1, [2]], "label [2] (list)"),
        ([1, "card_arrival"], "but the label 1 on line 1 is a int"),
    ],
)
def test_local_label_type_checked(tmp_path: Path, labels: list[object], expected: str) -> None:
    folder = tmp_path / "mteb" / "Banking77Classification"
    write_rows(folder / "train.jsonl", [{"text": "where is my card", "label": 1}])
    write_rows(folder / "test.jsonl", [{"text": f"text {index}", "label": label} for index, label in enumerate(labels)])

    with pytest.raises(InvalidFieldError) as caught:
        prepare_task(BANKING, tmp_path)

    assert "test.jsonl, line 2" in str(caught.value)
    assert expected in str(caught.value)


# --- configuration ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def registered() -> None:
    from eval.config import register_schemas

    register_schemas()


@pytest.mark.parametrize(
    "arguments, expected",
    [
        (["model=nope"], "unknown model 'nope'; valid choices: e5-base"),
        (["model.foo=1"], "unknown key 'model.foo'; valid keys of model: name"),
        (["foo=1"], "unknown key 'foo'; valid keys of the run config: model"),
        (["model.batch_size=abc"], "model.batch_size=abc Value 'abc' of type 'str' could not be converted to Integer"),
        (["overwrite=maybe"], "Value 'maybe' is not a valid bool"),
    ],
)
def test_config_error_one_line(registered: None, arguments: list[str], expected: str) -> None:
    from eval.__main__ import preflight

    message = preflight(["task=beir/scifact", *arguments])

    assert message is not None
    assert expected in message
    assert "\n" not in message


def test_unknown_task_lists_choices(registered: None) -> None:
    from eval.__main__ import preflight

    message = preflight(["task=beir/nope"])

    assert message is not None
    assert message.startswith("unknown task 'beir/nope'; valid choices: beir/arguana")


def test_chunk_size_must_be_positive(tmp_path: Path) -> None:
    cfg = compose_run_config(["task=beir/scifact", "model=minilm-l6", "cache_chunk_size=0", f"data_dir={tmp_path}"])

    with pytest.raises(ConfigError, match="cache_chunk_size=0"):
        validate(cfg)


def test_model_path_missing(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="does not exist or is not a folder"):
        resolve_checkpoint(ModelConfig(name="local", path=str(tmp_path / "absent")))


def test_model_path_without_weights(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{}")

    with pytest.raises(CheckpointError) as caught:
        resolve_checkpoint(ModelConfig(name="local", path=str(tmp_path)))

    assert "no model weights" in str(caught.value)
    assert "found config.json" in str(caught.value)


def test_hub_id_offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")

    with pytest.raises(CheckpointError) as caught:
        resolve_checkpoint(ModelConfig(name="remote", hf_id="example-org/never-cached-encoder", revision="main"))

    assert "HF_HUB_OFFLINE is set" in str(caught.value)
    assert "model.path=DIR" in str(caught.value)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA device")
def test_cuda_without_device() -> None:
    from eval.encoder import select_device

    with pytest.raises(ConfigError, match="model.device=cuda was requested but torch sees no CUDA device"):
        select_device("cuda")


# --- checkpoints ---------------------------------------------------------------


def copy_checkpoint(source: Path, target: Path) -> Path:
    shutil.copytree(source, target)
    return target


class RunsCode:
    """A pickled object that creates a folder when it is unpickled."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.mkdir, (str(self.marker),))


def test_remote_code_needs_opt_in(tiny_bert_dir: Path, tmp_path: Path) -> None:
    folder = copy_checkpoint(tiny_bert_dir, tmp_path / "custom")
    config = json.loads((folder / "config.json").read_text())
    config["model_type"] = "custom-encoder"
    config["auto_map"] = {"AutoConfig": "configuration_custom.CustomConfig", "AutoModel": "modeling_custom.CustomModel"}
    (folder / "config.json").write_text(json.dumps(config))
    info = resolve_checkpoint(ModelConfig(name="local", path=str(folder)))

    with pytest.raises(CheckpointError, match="model.trust_remote_code=true"):
        load_model(info, dtype=torch.float32, device=torch.device("cpu"), trust_remote_code=False)


def test_remote_code_config_needs_opt_in(tiny_bert_dir: Path, tmp_path: Path) -> None:
    folder = copy_checkpoint(tiny_bert_dir, tmp_path / "custom-config")
    config = json.loads((folder / "config.json").read_text())
    config["model_type"] = "custom-encoder"
    config["auto_map"] = {"AutoConfig": "configuration_custom.CustomConfig"}
    (folder / "config.json").write_text(json.dumps(config))
    info = resolve_checkpoint(ModelConfig(name="local", path=str(folder)))

    with pytest.raises(CheckpointError, match="model.trust_remote_code=true"):
        load_config(info, trust_remote_code=False)


def test_attention_without_sdpa_falls_back(tiny_bert_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from transformers import BertModel

    monkeypatch.setattr(BertModel, "_supports_sdpa", False)
    info = resolve_checkpoint(ModelConfig(name="local", path=str(tiny_bert_dir)))

    model = load_model(info, dtype=torch.float32, device=torch.device("cpu"), trust_remote_code=False, attn_implementation="sdpa")

    assert model.config._attn_implementation == "eager"


def test_parameters_counted_from_the_header(tiny_bert_dir: Path) -> None:
    info = resolve_checkpoint(ModelConfig(name="local", path=str(tiny_bert_dir)))
    model = load_model(info, dtype=torch.float32, device=torch.device("cpu"), trust_remote_code=False)

    assert count_parameters(info) == sum(parameter.numel() for parameter in model.parameters())


def test_missing_vocabulary_rejected(tiny_bert_dir: Path, tmp_path: Path) -> None:
    folder = copy_checkpoint(tiny_bert_dir, tmp_path / "no-vocab")
    for name in VOCABULARY_FILES + ("tokenizer_config.json", "special_tokens_map.json"):
        (folder / name).unlink(missing_ok=True)
    info = resolve_checkpoint(ModelConfig(name="local", path=str(folder)))

    with pytest.raises(CheckpointError) as caught:
        load_tokenizer(info, trust_remote_code=False)

    assert "has no tokenizer vocabulary" in str(caught.value)
    assert "vocab.txt" in str(caught.value)
    assert "config.json" in str(caught.value)


def test_truncated_safetensors_rejected_at_start(tiny_bert_dir: Path, tmp_path: Path) -> None:
    folder = copy_checkpoint(tiny_bert_dir, tmp_path / "truncated-safetensors")
    weights = folder / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    model_cfg = ModelConfig(name="local", path=str(folder), device="cpu")

    with pytest.raises(CheckpointError) as caught:
        E5Encoder(model_cfg)

    assert "could not load model.safetensors" in str(caught.value)
    assert "re-download or re-save" in str(caught.value)


def test_truncated_pickle_rejected(tiny_bert_dir: Path, tmp_path: Path) -> None:
    from safetensors.torch import load_file

    folder = copy_checkpoint(tiny_bert_dir, tmp_path / "truncated-bin")
    state = load_file(folder / "model.safetensors")
    (folder / "model.safetensors").unlink()
    torch.save(state, folder / "pytorch_model.bin")
    weights = folder / "pytorch_model.bin"
    weights.write_bytes(weights.read_bytes()[:200])
    info = resolve_checkpoint(ModelConfig(name="local", path=str(folder)))

    with pytest.raises(CheckpointError) as caught:
        load_model(info, dtype=torch.float32, device=torch.device("cpu"), trust_remote_code=False)

    assert "could not load pytorch_model.bin" in str(caught.value)


def test_pickle_with_code_rejected(tiny_bert_dir: Path, tmp_path: Path) -> None:
    folder = copy_checkpoint(tiny_bert_dir, tmp_path / "pickled")
    (folder / "model.safetensors").unlink()
    marker = tmp_path / "code-ran"
    torch.save({"weights": RunsCode(marker)}, folder / "pytorch_model.bin")
    info = resolve_checkpoint(ModelConfig(name="local", path=str(folder)))

    with pytest.raises(CheckpointError) as caught:
        load_model(info, dtype=torch.float32, device=torch.device("cpu"), trust_remote_code=False)

    assert "weights-only unpickler rejected it" in str(caught.value)
    assert "pytorch_model.bin" in str(caught.value)
    assert not marker.exists()


def test_tensor_pickle_still_loads(tiny_bert_dir: Path, tmp_path: Path) -> None:
    from safetensors.torch import load_file

    folder = copy_checkpoint(tiny_bert_dir, tmp_path / "plain-bin")
    state = load_file(folder / "model.safetensors")
    (folder / "model.safetensors").unlink()
    torch.save(state, folder / "pytorch_model.bin")
    info = resolve_checkpoint(ModelConfig(name="local", path=str(folder)))

    model = load_model(info, dtype=torch.float32, device=torch.device("cpu"), trust_remote_code=False)

    name, tensor = next(iter(state.items()))
    assert torch.equal(model.state_dict()[name.removeprefix("bert.")], tensor)


def test_safetensors_preferred_over_pickle(tiny_bert_dir: Path, tmp_path: Path) -> None:
    folder = copy_checkpoint(tiny_bert_dir, tmp_path / "both")
    marker = tmp_path / "code-ran"
    torch.save({"weights": RunsCode(marker)}, folder / "pytorch_model.bin")

    info = resolve_checkpoint(ModelConfig(name="local", path=str(folder)))
    load_model(info, dtype=torch.float32, device=torch.device("cpu"), trust_remote_code=False)

    assert info.weights_file == "model.safetensors"
    assert not marker.exists()


# --- names in paths ------------------------------------------------------------------


@pytest.mark.parametrize("hostile", ["../../etc/passwd", "..", ".", "/abs/path", "a/../../b", "..\\..\\win", "", "~root", "x\x00y"])
def test_record_path_stays_inside(tmp_path: Path, hostile: str) -> None:
    results = tmp_path / "results"

    path = record_path(results, model_id=hostile, revision=hostile, settings=hostile, task_name=hostile)

    assert path.resolve().is_relative_to(results.resolve())
    assert len(path.relative_to(results).parts) == 4
    assert path_component(hostile) not in {"", ".", ".."}
