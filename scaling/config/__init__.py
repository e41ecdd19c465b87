"""Configuration: one YAML file with ``model``, ``data``, ``train`` and ``eval`` sections.

``load_config(path, overrides)`` reads the file, applies ``section.key=value`` overrides, expands
the method preset, and validates every section, reporting all problems in one error.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from typing import Any

from scaling.config.base import ConfigError, apply_overrides, from_dict, load_yaml, to_dict
from scaling.config.data import DataConfig
from scaling.config.eval import EvalConfig
from scaling.config.model import ModelConfig, resolve_model_section
from scaling.config.train import TrainConfig


@dataclasses.dataclass
class Config:
    model: ModelConfig = dataclasses.field(default_factory=ModelConfig)
    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    train: TrainConfig = dataclasses.field(default_factory=TrainConfig)
    eval: EvalConfig = dataclasses.field(default_factory=EvalConfig)


def config_from_dict(data: Mapping[str, Any]) -> Config:
    data = dict(data)
    if "model" in data and isinstance(data["model"], Mapping):
        data["model"] = resolve_model_section(data["model"])
    return from_dict(Config, data)


def load_config(path: str | None = None, overrides: Iterable[str] = ()) -> Config:
    """YAML file (optional) + ``key=value`` overrides → validated :class:`Config`."""
    data = load_yaml(path) if path else {}
    data = apply_overrides(data, overrides)
    return config_from_dict(data)


__all__ = ["Config", "ConfigError", "DataConfig", "EvalConfig", "ModelConfig", "TrainConfig", "config_from_dict", "load_config", "to_dict"]
