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


# Versions that a pair states, checked against the environment


def test_stated_versions_from_keys_requirements_name():
    pair = matrix.VersionPair(
        torch="any",
        transformers="4.57.6",
        requirements=["Sentence_Transformers<6", "datasets"],
        python=sys.executable,
        name="transformers-4.57.6_tokenizers-0.22.2_cuda-12.1_current",
    )

    stated = matrix.stated_versions(pair)

    assert [(item.package, item.specifier, item.required) for item in stated] == [
        ("transformers", "==4.57.6", True),
        ("sentence-transformers", "<6", True),
        ("tokenizers", "==0.22.2", False),
        ("cuda", "==12.1", False),
    ]
    assert stated[0].source == "its 'transformers' key"
    assert stated[2].source == "its name 'transformers-4.57.6_tokenizers-0.22.2_cuda-12.1_current'"


def test_stated_versions_invalid_key():
    pair = matrix.VersionPair(torch="latest", transformers="any", python=sys.executable, name="current")
    with pytest.raises(matrix.MatrixConfigError, match="invalid torch version 'latest'"):
        matrix.stated_versions(pair)


@pytest.mark.parametrize(
    "installed,expected",
    [
        ({"torch": "2.13.0+cpu", "transformers": "4.57.6", "sentence-transformers": "5.7.0"}, []),
        (
            {"torch": "2.13.0", "transformers": "5.25.0", "sentence-transformers": "5.7.0"},
            ["transformers 5.25.0 is installed, but its name 'torch-2.13.0_transformers-4.57.6' states transformers==4.57.6"],
        ),
        (
            {"torch": "2.14.1", "transformers": "4.57.6", "sentence-transformers": "6.3.0"},
            [
                "torch 2.14.1 is installed, but its 'torch' key states torch==2.13.0",
                "sentence-transformers 6.3.0 is installed, but its requirement 'sentence-transformers<6' states "
                "sentence-transformers<6",
            ],
        ),
        (
            {"torch": "2.13.0", "transformers": "4.57.6", "sentence-transformers": None},
            ["sentence-transformers is not installed, but its requirement 'sentence-transformers<6' states sentence-transformers<6"],
        ),
    ],
)
def test_version_mismatches(installed, expected):
    pair = matrix.VersionPair(
        torch="2.13.0",
        transformers="any",
        requirements=["sentence-transformers<6"],
        python=sys.executable,
        name="torch-2.13.0_transformers-4.57.6",
    )
    assert matrix.version_mismatches(matrix.stated_versions(pair), installed) == expected


def test_existing_interpreter_other_version_fails(tmp_path: Path):
    import importlib.metadata

    installed = importlib.metadata.version("transformers")
    assert installed != "4.57.6"
    stated = matrix.VersionPair(torch="any", transformers="any", python=sys.executable, name="transformers-4.57.6")
    matching = matrix.VersionPair(
        torch="any", transformers="any", python=sys.executable, name=f"cuda-12.1_transformers-{installed}"
    )

    outcomes = matrix.run_matrix(
        [stated, matching], ["task=beir/no-such-task"], venv_dir=tmp_path / "venvs", results_dir=tmp_path / "results",
        install_only=True,
    )

    assert [outcome.status for outcome in outcomes] == [matrix.VERSION_MISMATCH, "installed"]
    assert outcomes[0].installed["transformers"] == installed
    assert outcomes[0].error == (
        f"the environment of {sys.executable} does not match pair transformers-4.57.6: transformers {installed} is "
        "installed, but its name 'transformers-4.57.6' states transformers==4.57.6. Install the stated versions "
        "there, or correct the pair's name, versions or requirements in the matrix config"
    )
    assert outcomes[1].error is None
    manifest = json.loads((tmp_path / "results" / matrix.MANIFEST_NAME).read_text())
    assert [pair["status"] for pair in manifest["pairs"]] == [matrix.VERSION_MISMATCH, "installed"]


def test_cli_version_mismatch_exits_1(tmp_path: Path, capsys):
    config = write_config(
        tmp_path / "matrix.yaml",
        "overrides: [task=beir/no-such-task]\n"
        "pairs:\n"
        f"  - {{torch: any, transformers: any, requirements: ['numpy<1'], python: '{sys.executable}', name: current}}\n",
    )

    status = matrix.main(["--config", str(config), "--results-dir", str(tmp_path / "results"), "--venv-dir", str(tmp_path)])

    output = capsys.readouterr().out
    assert status == 1
    assert "current: version_mismatch" in output
    assert "is installed, but its requirement 'numpy<1' states numpy<1" in output
    assert not (tmp_path / "results" / "current" / "evaluation.log").exists()
