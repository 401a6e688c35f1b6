"""The results record's file handling: atomic writes, permissions, safe names."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from eval.results import path_component, record_path, write_json_atomic


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
