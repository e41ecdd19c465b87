"""Trainable-parameter counts cached per backbone pair, so ``scaling methods`` answers without building models.

Counting builds every preset on the ``meta`` device (no weights, no memory), but importing transformers and
building twenty models still takes seconds (minutes on a loaded machine). The counts depend only on the
method's resolved config, the two backbones' configs and this package's model code, so they are cached in
``$XDG_CACHE_HOME/scaling/param_counts.json`` (default ``~/.cache/scaling``) under a key of exactly those:
the preset, the overrides, the backbone names (for a local directory also its ``config.json``'s size and
mtime) and a hash of the source files of ``scaling/models`` and ``scaling/config``. Any change to one of
them is another key; a stale entry is never read. ``SCALING_NO_PARAM_CACHE=1`` turns the cache off.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
from typing import Any

from scaling.common.io import write_json

_PACKAGE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MAX_ENTRIES = 2000


def cache_path() -> str:
    root = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(root, "scaling", "param_counts.json")


@functools.lru_cache(maxsize=1)
def code_hash() -> str:
    """Hash of the source that decides a count: scaling/models/*.py and scaling/config/*.py."""
    h = hashlib.sha256()
    for sub in ("models", "models/encoders", "config"):
        folder = os.path.join(_PACKAGE, sub)
        for name in sorted(os.listdir(folder)):
            if name.endswith(".py"):
                h.update(name.encode())
                with open(os.path.join(folder, name), "rb") as fh:
                    h.update(fh.read())
    return h.hexdigest()[:16]


def _backbone_id(name: str) -> Any:
    from scaling.models.encoders.registry import loader_for, split_encoder_name

    prefix, ref = split_encoder_name(name)
    if prefix is not None:  # another library's encoder: its version + the file/folder
        from importlib import metadata

        dist = loader_for(prefix).distribution
        try:
            version = metadata.version(dist) if dist else None
        except metadata.PackageNotFoundError:
            version = None
        path = os.path.abspath(os.path.expanduser(ref.split("@", 1)[-1])) if ref else ""
        stat = os.stat(path) if path and os.path.exists(path) else None
        return [name, version, stat.st_size if stat else None, stat.st_mtime_ns if stat else None]
    path = os.path.abspath(os.path.expanduser(name))
    if os.path.isdir(path):
        cfg = os.path.join(path, "config.json")
        stat = os.stat(cfg) if os.path.isfile(cfg) else None
        return [path, stat.st_size if stat else None, stat.st_mtime_ns if stat else None]
    return name  # a shape name or hub id


def key(method: str, llm: str, encoder: str, overrides: list[str]) -> str:
    parts = {"method": method, "llm": _backbone_id(llm), "encoder": _backbone_id(encoder),
             "overrides": list(overrides), "code": code_hash()}
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()


class CountCache:
    """Load once, :meth:`get` / :meth:`put`, :meth:`save` once (atomic; a failed write only loses the cache)."""

    def __init__(self, enabled: bool | None = None):
        self.enabled = (os.environ.get("SCALING_NO_PARAM_CACHE", "") in ("", "0")) if enabled is None else enabled
        self.path = cache_path()
        self.entries: dict[str, Any] = {}
        self.dirty = False
        self.hits = 0
        if self.enabled and os.path.isfile(self.path):
            try:
                with open(self.path) as fh:
                    data = json.load(fh)
                self.entries = data if isinstance(data, dict) else {}
            except (OSError, ValueError):
                self.entries = {}

    def get(self, k: str) -> Any:
        value = self.entries.get(k) if self.enabled else None
        self.hits += value is not None
        return value

    def put(self, k: str, value: Any) -> None:
        if self.enabled:
            self.entries[k] = value
            self.dirty = True

    def save(self) -> None:
        if not (self.enabled and self.dirty):
            return
        entries = dict(list(self.entries.items())[-MAX_ENTRIES:])
        try:
            os.makedirs(os.path.dirname(self.path), exist_ok=True)
            write_json(self.path, entries)
        except OSError:
            pass
