"""Command line: ``python -m eval task=<task> [model=<model>] [overrides]``.

Hydra composes the configuration from ``configs/``; this module only turns
composition errors into one-line messages, hands the typed config to
:func:`eval.run.run` and prints the summary.
"""

from __future__ import annotations

import gc
import importlib
import logging
import re
import sys
from typing import Optional

from eval.config import CONFIG_DIR, VERSION_BASE, register_mteb_task_configs


# Flags after which Hydra skips the usual run; composition errors are then Hydra's to report.
_NON_RUN_FLAGS = {"-m", "--multirun", "-h", "--help", "--hydra-help", "-i", "--info", "-sc", "--shell-completion"}
_MULTIRUN_FLAGS = {"-m", "--multirun"}
# Flags of Hydra's command line that take a value.
_FLAGS_WITH_VALUE = {"-c", "--cfg", "-p", "--package", "-cp", "--config-path", "-cn", "--config-name", "-cd", "--config-dir", "--info", "-i"}

logger = logging.getLogger("eval")


def _overrides(arguments: list[str]) -> list[str]:
    overrides = []
    skip_next = False
    for argument in arguments:
        if skip_next:
            skip_next = False
            continue
        if argument in _FLAGS_WITH_VALUE:
            skip_next = True
            continue
        if argument.startswith("-"):
            continue
        if not argument.startswith("hydra."):
            overrides.append(argument)
    return overrides


_UNKNOWN_KEY = re.compile(r"Key '(?P<key>[^']+)' not in '(?P<schema>\w+)'")
_SCHEMA_SECTIONS = {"ModelConfig": "model", "TaskConfig": "task", "RunConfig": ""}
_NOT_A_BOOL = re.compile(r"Value '[^']*' is not a valid bool")


def _unknown_key_message(text: str) -> Optional[str]:
    from dataclasses import fields

    from eval import config

    match = _UNKNOWN_KEY.search(text)
    if not match or match.group("schema") not in _SCHEMA_SECTIONS:
        return None
    section = _SCHEMA_SECTIONS[match.group("schema")]
    full_key = f"{section}.{match.group('key')}" if section else match.group("key")
    names = ", ".join(field.name for field in fields(getattr(config, match.group("schema"))))
    return f"unknown key {full_key!r}; valid keys of {section or 'the run config'}: {names}"


def _one_line(error: BaseException) -> str:
    from hydra.errors import MissingConfigException

    from eval.config import task_choices

    if isinstance(error, MissingConfigException) and error.missing_cfg_file:
        group, _, option = error.missing_cfg_file.rpartition("/")
        if group.startswith("task"):
            return f"unknown task {error.missing_cfg_file.removeprefix('task/')!r}; valid choices: {', '.join(task_choices())}"
        if error.options is not None:
            return f"unknown {group or 'config'} {option!r}; valid choices: {', '.join(error.options)}"

    messages = [str(error)] + ([str(error.__cause__)] if error.__cause__ is not None else [])
    text = " ".join(messages)
    unknown_key = _unknown_key_message(text)
    if unknown_key:
        return unknown_key

    lines = []
    for message in messages:
        message = message.split("\nConfig search path", 1)[0].split("\n    full_key:", 1)[0]
        lines.extend(line.strip() for line in message.splitlines() if line.strip())
    line = " ".join(lines)
    if _NOT_A_BOOL.search(text):
        line += "; valid values: true, false"
    return line


def _check_swept_options(arguments: list[str]) -> Optional[str]:
    """Check every model and task named in a sweep (``model=a,b``), which Hydra only finds mid-sweep."""
    from eval.config import model_config_names, task_choices

    for override in _overrides(arguments):
        group, _, values = override.partition("=")
        if group not in {"model", "task"}:
            continue
        for value in values.split(","):
            if group == "model" and value not in model_config_names():
                return f"unknown model {value!r}; valid choices: {', '.join(model_config_names())}"
            if group == "task" and not value.startswith("mteb/") and value not in task_choices():
                return f"unknown task {value!r}; valid choices: {', '.join(task_choices())}"
    return None


def preflight(arguments: list[str]) -> Optional[str]:
    """Compose the config once with Hydra's compose API; return a one-line error or None."""
    if any(argument in _MULTIRUN_FLAGS for argument in arguments):
        return _check_swept_options(arguments)
    if any(argument in _NON_RUN_FLAGS for argument in arguments):
        return None
    from hydra import compose, initialize_config_dir
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    from omegaconf import OmegaConf

    from eval.config import task_choices

    try:
        with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base=VERSION_BASE):
            cfg = compose(config_name="config", overrides=_overrides(arguments))
    except (HydraException, OmegaConfBaseException, ValueError) as error:
        return _one_line(error)
    if OmegaConf.is_missing(cfg, "task"):
        return f"no task chosen; pass task=<choice>, one of: {', '.join(task_choices())}"
    return None


def _imports_done() -> None:
    """Turn the garbage collector back on once the libraries are imported.

    Importing torch, transformers, sentence-transformers and mteb creates
    millions of long-lived objects, and the collector, off since :func:`main`
    began, would rescan them at every full collection: about 1.3 s of a 5.3 s
    import on a 2-core machine. Frozen, they are skipped by later collections,
    the one at interpreter exit included (another 1.2 s).
    """
    gc.freeze()
    gc.enable()


def main() -> None:
    """Entry point of ``python -m eval``."""
    gc.disable()
    try:
        _main()
    except KeyboardInterrupt:
        print(
            "interrupted; run the same command again to resume: finished chunks are kept in the embedding cache",
            file=sys.stderr,
        )
        # 128 + SIGINT, the status a shell reports for a command stopped with Ctrl-C.
        raise SystemExit(130) from None
    finally:
        gc.enable()


def _main() -> None:
    import hydra
    from omegaconf import DictConfig

    from eval.config import register_schemas

    arguments = sys.argv[1:]
    register_schemas()
    register_mteb_task_configs(arguments)
    problem = preflight(arguments)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        raise SystemExit(2)

    @hydra.main(config_path=str(CONFIG_DIR), config_name="config", version_base=VERSION_BASE)
    def evaluate(cfg: DictConfig) -> None:
        from hydra.core.hydra_config import HydraConfig

        from eval.beir_data import DataError
        from eval.checkpoint import CheckpointError
        from eval.config import ConfigError, to_run_config
        from eval.encoder import EncodingOutOfMemoryError
        from eval.results import format_summary
        from eval.run import run

        from hydra.types import RunMode

        # mteb.evaluate imports sentence-transformers on every call; importing
        # it here puts it under the paused collector too.
        importlib.import_module("sentence_transformers")
        _imports_done()

        overrides = list(HydraConfig.get().overrides.task)
        try:
            outcome = run(to_run_config(cfg), overrides)
        except (ConfigError, CheckpointError, DataError, FloatingPointError, EncodingOutOfMemoryError) as error:
            print(f"error: {error}", file=sys.stderr)
            if HydraConfig.get().mode == RunMode.MULTIRUN:
                # One failed combination must not cancel the rest of a sweep.
                logger.error("Run with %s failed: %s", " ".join(overrides), error)
                failed_runs.append(" ".join(overrides))
                return
            logger.error("%s", error)
            raise SystemExit(1) from None
        print(format_summary(outcome.record, outcome.record_path, skipped=outcome.skipped))

    failed_runs: list[str] = []
    evaluate()
    if failed_runs:
        print(f"error: {len(failed_runs)} run(s) of the sweep failed: {'; '.join(failed_runs)}", file=sys.stderr)
        raise SystemExit(1)


if __name__ == "__main__":
    main()
    # Objects alive now last until exit. Frozen, they are skipped by the final collection.
    gc.freeze()
