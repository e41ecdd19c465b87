"""Configuration: one YAML file with ``model``, ``data``, ``train`` and ``eval`` sections.

``load_config(path, overrides)`` reads the file, applies ``section.key=value`` overrides, expands
the method preset, and validates every section, reporting all problems in one error.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Iterable, Mapping
from typing import Any

from scaling.config.base import ConfigError, apply_overrides, from_dict, load_yaml, parse_override, to_dict
from scaling.config.data import DataConfig
from scaling.config.eval import EvalConfig
from scaling.config.model import METHOD_BLOCKS, ModelConfig, resolve_model_section
from scaling.config.train import TrainConfig
from scaling.config.versions import CONFIG_FORMAT


@dataclasses.dataclass
class Config:
    model: ModelConfig = dataclasses.field(default_factory=ModelConfig)
    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    train: TrainConfig = dataclasses.field(default_factory=TrainConfig)
    eval: EvalConfig = dataclasses.field(default_factory=EvalConfig)
    # format of this config (scaling/config/versions.py): stored configs of older formats get the override keys
    # that keep their behaviour when read back (adapters, checkpoints); a config file passed in is the current one
    config_format: int = CONFIG_FORMAT


def config_from_dict(data: Mapping[str, Any]) -> Config:
    data = dict(data)
    if "model" in data and isinstance(data["model"], Mapping):
        data["model"] = resolve_model_section(data["model"])
    return from_dict(Config, data)


def load_config(path: str | None = None, overrides: Iterable[str] = (), warn=None) -> Config:
    """YAML file (optional) + ``key=value`` overrides → validated :class:`Config`.

    An override that switches ``model.method`` to another preset drops the file's method-block sections
    (``model.extract/map/inject/finetune``, tuned for the file's preset) and says which through ``warn``
    (default: :func:`warnings.warn`); the overrides' own values for those sections are kept."""
    overrides = list(overrides)
    data = load_yaml(path) if path else {}
    data = switch_preset(data, overrides, warn or (lambda msg: warnings.warn(msg, stacklevel=3)))
    data = apply_overrides(data, overrides)
    return config_from_dict(data)


def switch_preset(data: Mapping[str, Any], overrides: list[str], warn) -> dict[str, Any]:
    """``data`` without the method-block sections of its ``model.method`` when ``overrides`` set another one."""
    data = dict(data)
    model = data.get("model")
    if not isinstance(model, Mapping) or not model.get("method"):
        return data
    new = None
    for item in overrides:
        keys, value = parse_override(item)
        if keys == ["model", "method"]:
            new = value
    if new is None or new == model["method"]:
        return data
    model = dict(model)
    dropped = {key: model.pop(key) for key in METHOD_BLOCKS if key in model}
    data["model"] = model
    if dropped:
        shown = ", ".join(f"model.{k}={v}" for k, v in dropped.items())
        warn(f"model.method {model['method']} -> {new}: dropped the config file's {model['method']}-specific {shown} "
             f"({new} starts from its own preset; pass any of them again as overrides if they apply)")
    return data


__all__ = ["Config", "ConfigError", "DataConfig", "EvalConfig", "ModelConfig", "TrainConfig", "config_from_dict", "load_config", "to_dict"]
