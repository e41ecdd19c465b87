"""A backbone's transformers config from a local directory, a hub id or a shape name (no weights).

Shared by the LLM loader (:mod:`scaling.models.backbones`) and the transformers encoder loaders
(:mod:`scaling.models.encoders.hf`); ``shapes`` is the table of shape names of that kind.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping

from transformers import AutoConfig, PretrainedConfig

from scaling.config.base import ConfigError


def load_config(name: str, kind: str, shapes: Mapping[str, Callable[[], PretrainedConfig]],
                trust_remote_code: bool = False) -> tuple[PretrainedConfig, bool]:
    """(config, is_shape). Errors name the path and what is accepted."""
    factory = shapes.get(name)
    if factory is not None:
        return factory(), True
    names = sorted(shapes)
    path = os.path.expanduser(name)
    looks_local = name.startswith((".", "/", "~")) or name.count("/") >= 2
    if looks_local and not os.path.isdir(path):
        raise ConfigError(
            f"{kind} path {name!r} does not exist. Pass a local Hugging Face model directory "
            f"(with config.json and weights), a hub id on a machine with network, or a shape name: {names}"
        )
    try:
        cfg = AutoConfig.from_pretrained(path, trust_remote_code=trust_remote_code)
    except Exception as err:  # noqa: BLE001 - transformers raises many kinds here
        raise ConfigError(
            f"cannot load the {kind} config from {name!r} ({type(err).__name__}: {str(err).splitlines()[0]}). "
            f"Pass a local Hugging Face model directory, a hub id (needs network), or a shape name: {names}"
        ) from None
    return cfg, False
