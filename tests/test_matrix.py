"""Version matrix runner: config parsing, reference pins, and a failing pair that does not stop the others."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from eval import matrix


def write_config(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_default_config_parses():
    overrides, pairs = matrix.load_matrix_config(matrix.DEFAULT_CONFIG)
    assert overrides == ["task=beir/scifact", "model=minilm-l6"]
    assert [pair.name for pair in pairs] == [
        "torch-2.13.0_transformers-5.23.0",
        "torch-2.13.0_transformers-4.57.6",
        "torch-2.14.1_transformers-5.23.0",
    ]
    assert pairs[1].release == ["datasets", "fsspec"]
    assert pairs[0].pip_requirements() == ["torch==2.13.0", "transformers==5.23.0"]


@pytest.mark.parametrize(
    "body,message",
    [
        ("pairs:\n  - torch: '2.13.0'\n", "has no 'transformers' version"),
        ("pairs:\n  - torch: '2.13.0'\n    transformers: '5.0.0'\n    cuda: '12'\n", "unknown keys \\['cuda'\\]"),
        ("overrides: [task=beir/scifact]\n", "lists no version pairs"),
        (
            "pairs:\n  - {torch: '2.13.0', transformers: '5.0.0'}\n  - {torch: '2.13.0', transformers: '5.0.0'}\n",
            "repeat",
        ),
    ],
)
def test_invalid_config_rejected(tmp_path: Path, body: str, message: str):
    with pytest.raises(matrix.MatrixConfigError, match=message):
        matrix.load_matrix_config(write_config(tmp_path / "matrix.yaml", body))


def test_missing_config_named(tmp_path: Path):
    with pytest.raises(matrix.MatrixConfigError, match="not found"):
        matrix.load_matrix_config(tmp_path / "absent.yaml")


def test_reference_constraints_release_pair_packages():
    pair = matrix.VersionPair(torch="2.13.0", transformers="4.57.6", requirements=["Sentence_Transformers<6"], release=["datasets"])
    installed = [
        ("torch", "2.13.0+cpu"),
        ("transformers", "5.23.0"),
        ("huggingface_hub", "2.4.0"),
        ("datasets", "5.2.0"),
        ("sentence-transformers", "6.2.0"),
        ("mteb", "2.26.24"),
        ("NumPy", "2.4.6"),
        ("e5-eval", "0.1.0"),
        ("scipy", "1.17.1+local"),
    ]
    assert matrix.reference_constraints(pair, installed) == ["mteb==2.26.24", "numpy==2.4.6", "scipy==1.17.1"]


def test_reference_constraints_bad_requirement():
    pair = matrix.VersionPair(torch="2.13.0", transformers="5.0.0", requirements=["not a requirement!"])
    with pytest.raises(matrix.MatrixConfigError, match="invalid requirement"):
        matrix.reference_constraints(pair, [])


def test_project_requirement_checked_first(tmp_path: Path):
    old_torch = matrix.VersionPair(torch="1.13.1", transformers="4.57.6")
    with pytest.raises(matrix.MatrixConfigError, match=r"torch 1\.13\.1 is outside the project's requirement torch>="):
        matrix.check_project_requirements(old_torch)
    matrix.check_project_requirements(matrix.VersionPair(torch="2.13.0", transformers="4.57.6"))

    outcomes = matrix.run_matrix([old_torch], ["task=beir/scifact"], venv_dir=tmp_path / "venvs", results_dir=tmp_path / "results")
    assert outcomes[0].status == "install_failed"
    assert not (tmp_path / "venvs" / old_torch.name).exists()


def test_failed_pairs_reported_and_others_run(tmp_path: Path):
    # The first pair cannot install: no torch 2.99.0 exists, and --no-index
    # keeps pip offline. The second uses this interpreter and fails at evaluation on an
    # unknown task. Both outcomes are recorded and the loop finishes.
    unavailable = matrix.VersionPair(torch="2.99.0", transformers="5.99.0")
    existing = matrix.VersionPair(torch="any", transformers="any", python=sys.executable, name="current")
    outcomes = matrix.run_matrix(
        [unavailable, existing],
        ["task=beir/no-such-task", "model=minilm-l6"],
        venv_dir=tmp_path / "venvs",
        results_dir=tmp_path / "results",
        pip_args=["--no-index"],
    )

    assert [outcome.status for outcome in outcomes] == ["install_failed", "evaluation_failed"]
    assert "pip install failed for torch-2.99.0_transformers-5.99.0" in outcomes[0].error
    assert "ERROR:" in outcomes[0].error  # pip's own reason follows the path of the log
    assert "2.99.0" in outcomes[0].error.split("\n", 1)[1]
    assert Path(outcomes[0].install_log).is_file()
    assert "unknown task 'beir/no-such-task'" in outcomes[1].error
    assert outcomes[1].installed["torch"] is not None

    manifest = json.loads((tmp_path / "results" / matrix.MANIFEST_NAME).read_text())
    assert [pair["status"] for pair in manifest["pairs"]] == ["install_failed", "evaluation_failed"]
    assert "install_failed" in matrix.format_outcomes(outcomes)

    # A later run of one pair keeps the other pair's entry.
    matrix.run_matrix([existing], ["task=beir/no-such-task"], venv_dir=tmp_path / "venvs", results_dir=tmp_path / "results")
    manifest = json.loads((tmp_path / "results" / matrix.MANIFEST_NAME).read_text())
    assert [pair["name"] for pair in manifest["pairs"]] == [unavailable.name, "current"]


def test_cli_unknown_pair(capsys):
    assert matrix.main(["--pair", "torch-9_transformers-9"]) == 2
    assert "unknown pair" in capsys.readouterr().err


@pytest.mark.realdata
def test_existing_interpreter_pair_evaluates(data_dir: Path, tmp_path: Path):
    current = matrix.VersionPair(torch="any", transformers="any", python=sys.executable, name="current")
    outcomes = matrix.run_matrix(
        [current],
        ["task=mteb/STSBenchmark", "model=minilm-l6", f"data_dir={data_dir}"],
        venv_dir=tmp_path / "venvs",
        results_dir=tmp_path / "results",
    )
    assert outcomes[0].status == "ok", outcomes[0].error
    assert outcomes[0].main_scores["STSBenchmark"] == pytest.approx(0.82032, abs=1e-5)
    assert all(Path(record).is_relative_to(tmp_path / "results" / "current") for record in outcomes[0].records)
