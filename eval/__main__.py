"""Command line: ``python -m eval task=<task> [model=<model>] [overrides]``.

Hydra composes the configuration from ``configs/``; this module only turns
composition errors into one-line messages, hands the typed config to
:func:`eval.run.run` and prints the summary.
"""

from __future__ import annotations

import logging
import re
import sys
from pathlib import Path
from typing import Optional

CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs"
VERSION_BASE = "1.3"

# Flags after which Hydra skips the usual run; composition errors are then Hydra's to report.
_NON_RUN_FLAGS = {"-m", "--multirun", "-h", "--help", "--hydra-help", "-i", "--info", "-sc", "--shell-completion"}
# Flags of Hydra's command line that take a value.
_FLAGS_WITH_VALUE = {"-c", "--cfg", "-p", "--package", "-cp", "--config-path", "-cn", "--config-name", "-cd", "--config-dir", "--info", "-i"}
_MTEB_TASK_OVERRIDE = re.compile(r"^\+{0,2}task=mteb/(?P<names>.+)$")

logger = logging.getLogger("eval")


def register_mteb_task_configs(arguments: list[str]) -> None:
    """Add a ``task/mteb/<TaskName>`` config for each MTEB task named on the command line.

    MTEB's registry holds over a thousand tasks, so their configs are created
    on demand instead of shipped as files; whether the name exists in MTEB is
    checked when the run starts.
    """
    from hydra.core.config_store import ConfigStore

    store = ConfigStore.instance()
    for argument in arguments:
        match = _MTEB_TASK_OVERRIDE.match(argument)
        if not match:
            continue
        for name in match.group("names").split(","):
            name = name.strip()
            if name and not (CONFIG_DIR / "task" / "mteb" / f"{name}.yaml").exists():
                store.store(group="task/mteb", name=name, node={"source": "mteb", "name": name})


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


def _one_line(error: BaseException) -> str:
    from hydra.errors import MissingConfigException

    if isinstance(error, MissingConfigException) and error.options is not None and error.missing_cfg_file:
        group, _, option = error.missing_cfg_file.rpartition("/")
        return f"unknown {group or 'config'} {option!r}; valid choices: {', '.join(error.options)}"

    text = str(error).split("\nConfig search path", 1)[0]
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return " ".join(lines)


def preflight(arguments: list[str]) -> Optional[str]:
    """Compose the config once with Hydra's compose API; return a one-line error or None."""
    if any(argument in _NON_RUN_FLAGS for argument in arguments):
        return None
    from hydra import compose, initialize_config_dir
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    try:
        with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base=VERSION_BASE):
            compose(config_name="config", overrides=_overrides(arguments))
    except (HydraException, OmegaConfBaseException, ValueError) as error:
        return _one_line(error)
    return None


def main() -> None:
    """Entry point of ``python -m eval``."""
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
        from eval.results import format_summary
        from eval.run import run

        overrides = list(HydraConfig.get().overrides.task)
        try:
            outcome = run(to_run_config(cfg), overrides)
        except (ConfigError, CheckpointError, DataError, FloatingPointError) as error:
            logger.error("%s", error)
            print(f"error: {error}", file=sys.stderr)
            raise SystemExit(1) from None
        print(format_summary(outcome.record, outcome.record_path, skipped=outcome.skipped))

    evaluate()


if __name__ == "__main__":
    main()
