"""The demo's cache: built artefacts (dataset shards, backbones, cached features) keyed by what made them.

An entry is a folder ``<cache>/<kind>-<key>`` where ``key`` hashes the entry's *spec* (the settings
that determine its content: sizes, steps, seed, the demo's format version, the keys of the entries
it was built from). It counts as present only when its ``DONE.json`` holds that same spec: an entry
is built in ``<folder>.tmp-<pid>`` and renamed into place when complete, so an interrupted build is
never reused. ``fresh=True`` (``scaling demo --fresh``) deletes the entry and rebuilds it.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from collections.abc import Callable
from typing import Any

DONE = "DONE.json"
VERSION = 1  # bump when the demo's data or backbones change meaning


def default_cache_dir() -> str:
    root = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(root, "scaling", "demo")


def spec_key(spec: dict[str, Any]) -> str:
    blob = json.dumps({"version": VERSION, **spec}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def entry_path(cache_dir: str, kind: str, spec: dict[str, Any]) -> str:
    return os.path.join(cache_dir, f"{kind}-{spec_key(spec)}")


def is_ready(path: str, spec: dict[str, Any]) -> bool:
    try:
        with open(os.path.join(path, DONE)) as fh:
            done = json.load(fh)
    except (OSError, json.JSONDecodeError):
        return False
    return done.get("spec") == json.loads(json.dumps({"version": VERSION, **spec}, sort_keys=True, default=str))


def read_info(path: str) -> dict[str, Any]:
    """What the builder returned when the entry was made (e.g. pretraining metrics, seconds)."""
    with open(os.path.join(path, DONE)) as fh:
        return json.load(fh).get("info", {})


def build_or_reuse(cache_dir: str, kind: str, spec: dict[str, Any], build: Callable[[str], dict | None],
                   fresh: bool = False) -> tuple[str, bool, dict[str, Any]]:
    """``(path, reused, info)``: the entry of ``spec``, built with ``build(tmp_path) -> info`` unless present."""
    path = entry_path(cache_dir, kind, spec)
    if fresh and os.path.exists(path):
        shutil.rmtree(path)
    if is_ready(path, spec):
        return path, True, read_info(path)
    if os.path.exists(path):
        shutil.rmtree(path)  # incomplete or stale
    tmp = f"{path}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    t0 = time.time()
    try:
        info = dict(build(tmp) or {})
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    info.setdefault("seconds", round(time.time() - t0, 2))
    with open(os.path.join(tmp, DONE), "w") as fh:
        json.dump({"spec": {"version": VERSION, **spec}, "info": info, "created": time.strftime("%Y-%m-%d %H:%M:%S")},
                  fh, indent=2, sort_keys=True, default=str)
    try:
        os.replace(tmp, path)
    except OSError:  # another run finished the same entry first: keep theirs
        shutil.rmtree(tmp, ignore_errors=True)
        if not is_ready(path, spec):
            raise
        return path, True, read_info(path)
    return path, False, info


def clean_stale_tmp(cache_dir: str, max_age_s: float = 6 * 3600) -> None:
    """Remove ``*.tmp-*`` build folders left by killed runs (older than ``max_age_s``)."""
    if not os.path.isdir(cache_dir):
        return
    now = time.time()
    for name in os.listdir(cache_dir):
        p = os.path.join(cache_dir, name)
        if ".tmp-" in name and os.path.isdir(p) and now - os.path.getmtime(p) > max_age_s:
            shutil.rmtree(p, ignore_errors=True)
