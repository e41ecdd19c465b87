"""Helpers shared by the non-transformers loaders: reference parsing, name suggestions, freezing."""

from __future__ import annotations

import difflib
import os
import types
from collections.abc import Iterable

from torch import nn

from scaling.config.base import ConfigError
from scaling.models.encoders.base import DTYPES


def looks_like_path(text: str) -> bool:
    return text.startswith((".", "/", "~")) or os.path.exists(os.path.expanduser(text))


def parse_ref(ref: str) -> tuple[str | None, str | None]:
    """``NAME@PATH`` → (NAME, PATH); ``PATH`` → (None, PATH); ``NAME`` → (NAME, None)."""
    if "@" in ref:
        name, path = ref.split("@", 1)
        return name or None, os.path.expanduser(path) if path else None
    if looks_like_path(ref):
        return None, os.path.expanduser(ref)
    return ref or None, None


def closest(name: str, valid: Iterable[str], n: int = 5) -> list[str]:
    valid = list(valid)
    close = difflib.get_close_matches(name, valid, n=n, cutoff=0.5)
    if not close:  # substring matches (e.g. 'eva02_large' → every eva02_large_* name)
        close = [v for v in valid if name.lower() in v.lower()][:n]
    return close


def freeze(model: nn.Module, dtype: str, device) -> nn.Module:
    model.to(dtype=DTYPES[dtype]).to(device)
    model.eval()
    model.requires_grad_(False)
    return model


def dims_namespace(model_type: str, **dims) -> types.SimpleNamespace:
    """What fingerprints record for a non-transformers encoder (``model_type`` + sizes)."""
    return types.SimpleNamespace(model_type=model_type, **dims)


def need_weights(prefix: str, ref: str, example: str) -> ConfigError:
    return ConfigError(f"model.encoder={prefix}:{ref} names no weights; weights come from a local file: {example}")
