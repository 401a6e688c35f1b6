"""The results record's file handling: atomic writes, permissions, safe names."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from eval.results import path_component, read_record, record_file_name, record_path, settings_slug, write_json_atomic


def test_atomic_write_leaves_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "a" / "record.json"
    write_json_atomic(target, {"score": 0.5})
    assert json.loads(target.read_text()) == {"score": 0.5}
    assert [path.name for path in target.parent.iterdir()] == ["record.json"]


def test_atomic_write_rejects_nan_and_keeps_old(tmp_path: Path) -> None:
    target = tmp_path / "record.json"
    write_json_atomic(target, {"score": 0.5})
    with pytest.raises(ValueError):
        write_json_atomic(target, {"score": float("nan")})
    assert json.loads(target.read_text()) == {"score": 0.5}
    assert [path.name for path in tmp_path.iterdir()] == ["record.json"]


def test_record_readable_under_umask(tmp_path: Path) -> None:
    previous = os.umask(0o022)
    try:
        write_json_atomic(tmp_path / "record.json", {})
    finally:
        os.umask(previous)
    mode = (tmp_path / "record.json").stat().st_mode & 0o777
    assert mode == 0o644


def minimal_record() -> dict:
    """Return the smallest record that read_record accepts."""
    return {
        "task_name": "STSBenchmark",
        "scores": {"test": [{"main_score": 0.8}]},
        "harness": {
            "task": {"name": "STSBenchmark", "type": "STS", "split": "test", "main_score_name": "cosine_spearman"},
            "model": {"model_id": "org/model", "revision": "rev1"},
        },
    }


def without(dotted_key: str) -> dict:
    """Return :func:`minimal_record` without one dotted key."""
    record = minimal_record()
    *parents, last = dotted_key.split(".")
    node = record
    for part in parents:
        node = node[part]
    del node[last]
    return record


def with_value(dotted_key: str, value) -> dict:
    """Return :func:`minimal_record` with one dotted key set to ``value``."""
    record = minimal_record()
    *parents, last = dotted_key.split(".")
    node = record
    for part in parents:
        node = node[part]
    node[last] = value
    return record


def test_read_record_accepts_minimal(tmp_path: Path) -> None:
    path = tmp_path / "STSBenchmark.json"
    write_json_atomic(path, minimal_record())

    assert read_record(path) == minimal_record()


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "it contains null, not a JSON object"),
        ([], "it contains an array, not a JSON object"),
        ({"harness": {}}, "key 'task_name' is missing"),
        ({"task_name": "X", "scores": {}, "harness": {}}, "key 'harness.task.name' is missing"),
        (without("harness.task.name"), "key 'harness.task.name' is missing"),
        (without("harness.task.split"), "key 'harness.task.split' is missing"),
        (without("harness.model.model_id"), "key 'harness.model.model_id' is missing"),
        (with_value("harness.model", None), "'harness.model' is null, not a JSON object"),
        (with_value("harness", "text"), "'harness' is a string, not a JSON object"),
        (with_value("scores", {"dev": [{"main_score": 0.8}]}), "'scores.test' is not a list of entries"),
        (with_value("scores", {"test": []}), "'scores.test' is not a list of entries"),
        (with_value("scores", {"test": [{"main_score": "high"}]}), "'scores.test' is not a list of entries"),
        (with_value("harness.task.split", ["test"]), "'harness.task.split' is ['test'], not a split name"),
    ],
)
def test_read_record_rejects_non_records(tmp_path: Path, content, message: str) -> None:
    path = tmp_path / "Broken.json"
    path.write_text(json.dumps(content), encoding="utf-8")

    with pytest.raises(ValueError) as raised:
        read_record(path)

    assert str(path) in str(raised.value)
    assert message in str(raised.value)


def test_read_record_rejects_non_utf8(tmp_path: Path) -> None:
    path = tmp_path / "Latin1.json"
    path.write_bytes('{"task_name": "Caf\u00e9"}'.encode("latin-1"))

    with pytest.raises(ValueError) as raised:
        read_record(path)

    assert str(path) in str(raised.value)
    assert "is not a valid results record" in str(raised.value)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("intfloat/e5-base", "intfloat__e5-base"),
        ("../../etc", "__..__etc"),
        ("..", "_"),
        (".hidden", "hidden"),
        ("a b:c", "a_b_c"),
    ],
)
def test_path_component_is_safe(value: str, expected: str) -> None:
    assert path_component(value) == expected


def test_record_path_stays_inside_results(tmp_path: Path) -> None:
    path = record_path(tmp_path, model_id="../../x", revision="..", settings="../s", task_name="../T")
    assert path.resolve().is_relative_to(tmp_path.resolve())


@pytest.mark.parametrize(
    ("normalize", "normalize_classification", "suffix"),
    [
        (True, None, ""),
        (True, True, ""),
        (True, False, "_clf-unnormalized"),
        (False, False, "_unnormalized"),
        (False, True, "_unnormalized_clf-normalized"),
    ],
)
def test_settings_slug_names_classification(normalize: bool, normalize_classification, suffix: str) -> None:
    slug = settings_slug(
        prefix_scheme="e5",
        pooling="mean",
        max_length=512,
        dtype="float32",
        normalize=normalize,
        normalize_classification=normalize_classification,
    )

    assert slug == "prefix-e5_mean_len512_float32" + suffix


@pytest.mark.parametrize(
    ("split", "name"),
    [(None, "SciFact.json"), ("test", "SciFact.json"), ("train", "SciFact.train.json"), ("dev/x", "SciFact.dev__x.json")],
)
def test_record_file_names_split(split, name: str) -> None:
    assert record_file_name("SciFact", split) == name
