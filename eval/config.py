"""Typed schema of a run's configuration.

Hydra composes YAML from ``configs/`` on top of these dataclasses, so a
misspelled key or a value of the wrong type fails at composition time. The
functions below ``__main__`` receive these objects (or plain arguments) and
never import Hydra.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from omegaconf import MISSING, DictConfig, OmegaConf

CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs"
VERSION_BASE = "1.3"
_TASK_OVERRIDE = re.compile(r"^\+{0,2}task=(?P<values>.+)$")

POOLING_MODES = ("mean", "cls")
PREFIX_SCHEMES = ("e5", "mteb", "e5-instruct", "none")
DTYPES = ("float32", "float16", "bfloat16")
DEVICES = ("auto", "cpu", "cuda", "mps")
TASK_SOURCES = ("beir", "mteb")


class ConfigError(ValueError):
    """A configuration value is invalid; the message names the key and the fix."""


@dataclass
class ModelConfig:
    """Checkpoint source and embedding settings of a run."""

    name: str = MISSING
    hf_id: Optional[str] = None
    revision: Optional[str] = None
    path: Optional[str] = None
    package: Optional[str] = None
    pooling: str = "mean"
    normalize: bool = True
    normalize_classification: bool = False
    max_length: int = 512
    prefix_scheme: str = "e5"
    dtype: str = "float32"
    device: str = "auto"
    batch_size: int = 64
    max_batch_tokens: Optional[int] = None
    onednn_linear: bool = True
    trust_remote_code: bool = False


@dataclass
class TaskConfig:
    """Benchmark task of a run and the location of its data."""

    source: str = MISSING
    name: str = MISSING
    mteb_name: Optional[str] = None
    split: Optional[str] = None
    ignore_identical_ids: Optional[bool] = None
    subtasks: list[str] = field(default_factory=list)


@dataclass
class RunConfig:
    """The whole run: model, task, data root, output folder and switches."""

    model: ModelConfig = MISSING
    task: TaskConfig = MISSING
    data_dir: str = MISSING
    results_dir: str = "results"
    prefix_scheme: Optional[str] = None
    overwrite: bool = False
    show_progress_bar: bool = True
    cache_dir: Optional[str] = ".cache/embeddings"
    cache_chunk_size: int = 4096


def register_schemas() -> None:
    """Register the run schema in Hydra's ConfigStore; ``configs/config.yaml`` extends it."""
    from hydra.core.config_store import ConfigStore

    store = ConfigStore.instance()
    store.store(name="run_schema", node=RunConfig)


def register_mteb_task_configs(arguments: list[str]) -> None:
    """Add a ``task/mteb/<TaskName>`` config for each MTEB task named in ``arguments``.

    MTEB's registry contains over a thousand tasks, so their configs are created
    on demand instead of shipped as files. Whether the name exists in MTEB is
    checked when the run starts.
    """
    from hydra.core.config_store import ConfigStore

    store = ConfigStore.instance()
    for argument in arguments:
        match = _TASK_OVERRIDE.match(argument)
        if not match:
            continue
        # A sweep lists several tasks, each with its group: task=mteb/A,mteb/B,beir/scifact.
        for value in match.group("values").split(","):
            value = value.strip()
            if not value.startswith("mteb/"):
                continue
            name = value.removeprefix("mteb/")
            if name and not (CONFIG_DIR / "task" / "mteb" / f"{name}.yaml").exists():
                store.store(group="task/mteb", name=name, node={"source": "mteb", "name": name})


def compose_run_config(overrides: list[str]) -> RunConfig:
    """Compose ``configs/config.yaml`` with command-line style overrides, without ``@hydra.main``.

    This is how tests, regression checks and other entry points build the same
    configuration that ``python -m eval`` would.
    """
    from hydra import compose, initialize_config_dir

    register_schemas()
    register_mteb_task_configs(overrides)
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base=VERSION_BASE):
        cfg = compose(config_name="config", overrides=overrides)
    return to_run_config(cfg)


def model_config_names() -> list[str]:
    """Return the options of the ``model`` config group."""
    return sorted(path.stem for path in (CONFIG_DIR / "model").glob("*.yaml"))


def task_choices() -> list[str]:
    """Return the options of the ``task`` group: every BEIR config and the MTEB pattern."""
    beir = sorted(f"beir/{path.stem}" for path in (CONFIG_DIR / "task" / "beir").glob("*.yaml"))
    return beir + ["mteb/<any MTEB task name, e.g. STSBenchmark>"]


def load_model_config(name: str) -> ModelConfig:
    """Load ``configs/model/<name>.yaml`` into a typed :class:`ModelConfig`.

    Raises:
        ConfigError: no such model config; the message lists the valid names.
    """
    path = CONFIG_DIR / "model" / f"{name}.yaml"
    if not path.is_file():
        raise ConfigError(f"unknown model {name!r}; valid choices: {', '.join(model_config_names())}")
    merged = OmegaConf.merge(OmegaConf.structured(ModelConfig), OmegaConf.load(path))
    return OmegaConf.to_object(merged)  # type: ignore[return-value]


def _check_choice(key: str, value: Any, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ConfigError(f"invalid value {key}={value!r}; valid choices: {', '.join(choices)}")


def validate(cfg: RunConfig) -> None:
    """Check the values that the schema's types cannot express.

    Raises:
        ConfigError: on the first invalid value, naming the key and the valid choices.
    """
    _check_choice("model.pooling", cfg.model.pooling, POOLING_MODES)
    _check_choice("model.prefix_scheme", cfg.model.prefix_scheme, PREFIX_SCHEMES)
    if cfg.prefix_scheme is not None:
        _check_choice("prefix_scheme", cfg.prefix_scheme, PREFIX_SCHEMES)
    _check_choice("model.dtype", cfg.model.dtype, DTYPES)
    _check_choice("model.device", cfg.model.device, DEVICES)
    _check_choice("task.source", cfg.task.source, TASK_SOURCES)

    if cfg.model.max_length < 1:
        raise ConfigError(f"invalid value model.max_length={cfg.model.max_length}; it must be a positive number of tokens")
    if cfg.cache_chunk_size < 1:
        raise ConfigError(f"invalid value cache_chunk_size={cfg.cache_chunk_size}; it must be at least 1 text")
    if cfg.model.max_batch_tokens is not None and cfg.model.max_batch_tokens < 1:
        raise ConfigError(
            f"invalid value model.max_batch_tokens={cfg.model.max_batch_tokens}; it must be at least 1 token, "
            "or null for the device's default"
        )
    if cfg.model.batch_size < 1:
        raise ConfigError(f"invalid value model.batch_size={cfg.model.batch_size}; it must be at least 1")
    if not (cfg.model.hf_id or cfg.model.path or cfg.model.package):
        raise ConfigError(
            f"model {cfg.model.name!r} names no checkpoint; set model.path=/dir/of/checkpoint "
            "or model.hf_id=<hub id>"
        )


def effective_prefix_scheme(cfg: RunConfig) -> str:
    """Return the prefix scheme in force: the top-level override, else the model's own."""
    return cfg.prefix_scheme or cfg.model.prefix_scheme


def to_run_config(cfg: DictConfig | RunConfig) -> RunConfig:
    """Convert a composed Hydra config into a typed :class:`RunConfig` with absolute paths."""
    if isinstance(cfg, DictConfig):
        run_cfg: RunConfig = OmegaConf.to_object(cfg)  # type: ignore[assignment]
    else:
        run_cfg = cfg
    run_cfg.data_dir = str(Path(os.path.expanduser(run_cfg.data_dir)).resolve())
    run_cfg.results_dir = str(Path(os.path.expanduser(run_cfg.results_dir)).resolve())
    if run_cfg.cache_dir:
        run_cfg.cache_dir = str(Path(os.path.expanduser(run_cfg.cache_dir)).resolve())
    if run_cfg.model.path:
        run_cfg.model.path = str(Path(os.path.expanduser(run_cfg.model.path)).resolve())
    return run_cfg
