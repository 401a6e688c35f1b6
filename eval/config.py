"""Typed schema of a run's configuration.

Hydra composes YAML from ``configs/`` on top of these dataclasses, so a
misspelled key or a value of the wrong type fails at composition time. The
functions below ``__main__`` receive these objects (or plain arguments) and
never import Hydra.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from omegaconf import MISSING, DictConfig, OmegaConf

POOLING_MODES = ("mean", "cls")
PREFIX_SCHEMES = ("e5", "mteb", "e5-instruct", "none")
DTYPES = ("float32", "float16", "bfloat16")
DEVICES = ("auto", "cpu", "cuda", "mps")
TASK_SOURCES = ("beir", "mteb")


class ConfigError(ValueError):
    """A configuration value is invalid; the message names the key and the fix."""


@dataclass
class ModelConfig:
    """Where a checkpoint comes from and how its embeddings are made."""

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
    trust_remote_code: bool = False


@dataclass
class TaskConfig:
    """Which benchmark task to run and where its data lives."""

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


def register_schemas() -> None:
    """Register the schemas in Hydra's ConfigStore so YAML files can extend them."""
    from hydra.core.config_store import ConfigStore

    store = ConfigStore.instance()
    store.store(name="run_schema", node=RunConfig)
    store.store(group="model", name="model_schema", node=ModelConfig)
    store.store(group="task", name="task_schema", node=TaskConfig)


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
    if run_cfg.model.path:
        run_cfg.model.path = str(Path(os.path.expanduser(run_cfg.model.path)).resolve())
    return run_cfg
