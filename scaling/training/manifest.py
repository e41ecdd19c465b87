"""Checkpoint integrity: a manifest of checksums written at commit, verified before a resume.

``RUN/checkpoints/step_N/manifest.json`` lists every file of the checkpoint (relative path, size,
SHA-256), the DeepSpeed partitions of every rank included. Rank 0 writes it once every rank has
written (and fsynced) its files, just before the directory is renamed into place; the manifest
itself is fsynced too. :func:`problems` re-reads a checkpoint and says what is damaged: a missing,
truncated or changed file, an empty file, a ``trainer_state.json`` that is not JSON, an adapter whose
header does not parse, a ``.pt`` file that does not load (weights only), a file the strategy needs that is
absent (optimizer, scheduler, every rank's RNG, data-position and log-window files), a manifest that does not
parse or lacks fields, and a missing manifest on a checkpoint whose ``trainer_state.json`` carries the current
``format``. A checkpoint written before manifests existed gets the structural checks only.

:func:`newest_intact` is what a resume uses: the newest checkpoint without problems. Every newer damaged
one is renamed ``step_N.damaged`` (kept for inspection, never resumed or pruned; :func:`mark_damaged`, its
``DAMAGED.txt`` says why) and named in a warning with what was wrong. A checkpoint whose files pass these checks but
that the strategy then fails to load is marked the same way by the resume (:mod:`scaling.training.resume`).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Callable

from scaling.common.io import fsync_file as fsync_path
from scaling.common.io import write_json
from scaling.common.run_layout import ADAPTER, MANIFEST, STATE, rank_file

VERSION = 1
CHUNK = 1 << 22
DAMAGED_SUFFIX = ".damaged"
DAMAGED_REASON = "DAMAGED.txt"  # inside a damaged checkpoint: why it is


def _files(directory: str) -> list[str]:
    out = []
    for root, _, names in os.walk(directory):
        for name in names:
            rel = os.path.relpath(os.path.join(root, name), directory)
            if rel != MANIFEST:
                out.append(rel)
    return sorted(out)


def _digest(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while True:
            block = fh.read(CHUNK)
            if not block:
                break
            h.update(block)
    return h.hexdigest()


def entry(directory: str, rel: str) -> dict:
    path = os.path.join(directory, rel)
    fsync_path(path)  # files written by other ranks and by DeepSpeed too: on disk before the rename
    return {"size": os.path.getsize(path), "sha256": _digest(path)}


def write(directory: str) -> str:
    """Checksum every file under ``directory`` into ``manifest.json`` (fsyncs each file and the manifest)."""
    files = {rel: entry(directory, rel) for rel in _files(directory)}
    path = os.path.join(directory, MANIFEST)
    _write_json(path, {"version": VERSION, "files": files})
    return path


def refresh(directory: str, rels: list[str]) -> None:
    """Re-checksum ``rels`` after they were rewritten (a checkpoint's state updated after its evaluation)."""
    path = os.path.join(directory, MANIFEST)
    if not os.path.isfile(path):
        return
    with open(path) as fh:
        data = json.load(fh)
    for rel in rels:
        data["files"][rel] = entry(directory, rel)
    _write_json(path, data)


def _write_json(path: str, obj: dict) -> None:
    write_json(path, obj, fsync=True, indent=1, sort_keys=True)


def _listed(path: str) -> tuple[dict | None, str | None]:
    """(the manifest's ``files``, None) or (None, why it is damaged): it must parse and give every file a
    relative name inside the checkpoint, an integer size and a 64-hex-digit SHA-256."""
    try:
        with open(path, "rb") as fh:
            data = json.loads(fh.read().decode("utf-8"))
    except (OSError, ValueError) as err:
        return None, f"{MANIFEST} is unreadable ({type(err).__name__}: {err})"
    files = data.get("files") if isinstance(data, dict) else None
    if not isinstance(files, dict) or not files:
        return None, f"{MANIFEST} lists no files (its 'files' field is missing or damaged)"
    for rel, want in files.items():
        if not isinstance(rel, str) or os.path.isabs(rel) or ".." in rel.replace("\\", "/").split("/"):
            return None, f"{MANIFEST} names {rel!r}, which is not a file of the checkpoint"
        if not isinstance(want, dict) or not isinstance(want.get("size"), int) or not isinstance(want.get("sha256"), str) \
                or len(want["sha256"]) != 64:
            return None, f"{MANIFEST} entry {rel!r} lacks a size or checksum ({want!r}): the manifest is damaged"
    return files, None


def _loads(path: str, rel: str) -> str | None:
    """Why a checkpoint's ``.pt`` file cannot be loaded the way a resume loads it (weights only), or None."""
    import torch

    try:
        if rel.startswith("deepspeed" + os.sep) or rel.startswith("deepspeed/"):
            from scaling.training.weights_only import deepspeed_safe_globals

            with torch.serialization.safe_globals(deepspeed_safe_globals()):
                torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        else:
            torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as err:  # noqa: BLE001 - whatever the loader raises, the file cannot be resumed from
        first = str(err).strip().splitlines()[0] if str(err).strip() else ""
        return f"{rel} cannot be loaded ({type(err).__name__}: {first[:200]})"
    return None


def problems(directory: str) -> list[str]:
    """What is damaged in the checkpoint ``directory`` (empty: intact).

    A checkpoint written in the current format (``trainer_state.json`` has ``format``) must have its manifest;
    one written before manifests existed gets the structural checks only. Every ``.pt`` file is loaded (weights
    only, memory-mapped) as a resume would load it: a file that passes its checksum but does not load is damaged.
    """
    out: list[str] = []
    path = os.path.join(directory, MANIFEST)
    if os.path.isfile(path):
        listed, why = _listed(path)
        if why:
            return [why]
        for rel, want in sorted(listed.items()):
            full = os.path.join(directory, rel)
            if not os.path.isfile(full):
                out.append(f"{rel} is missing")
            elif os.path.getsize(full) != want["size"]:
                out.append(f"{rel} has {os.path.getsize(full):,} bytes, {want['size']:,} when written (truncated or overwritten)")
            elif _digest(full) != want["sha256"]:
                out.append(f"{rel} does not match its checksum (changed bytes)")
    # structural checks (the only ones for checkpoints written before manifests)
    state = None
    state_path = os.path.join(directory, STATE)
    try:
        with open(state_path, "rb") as fh:
            state = json.loads(fh.read().decode("utf-8"))
        if not isinstance(state, dict) or not isinstance(state.get("step"), int):
            raise ValueError("no integer 'step'")
    except (OSError, ValueError) as err:
        msg = f"{STATE} is unreadable ({type(err).__name__}: {err})"
        if not any(p.startswith(STATE) for p in out):
            out.append(msg)
        state = None
    if state is not None and state.get("format") and not os.path.isfile(path):
        out.append(f"{MANIFEST} is missing (this checkpoint's format writes one; without it nothing can be verified)")
    adapter = os.path.join(directory, ADAPTER)
    if not any(p.startswith(ADAPTER) for p in out):
        try:
            from safetensors import safe_open

            with safe_open(adapter, framework="pt") as fh:
                list(fh.keys())
        except Exception as err:  # noqa: BLE001 - any failure to parse means damaged
            out.append(f"{ADAPTER} is unreadable ({type(err).__name__}: {err})")
    need: list[str] = []
    if state is not None:
        world = int(state.get("world_size") or 1) if isinstance(state.get("world_size"), int) else 1
        kinds = ("rng", "data") + (("window",) if state.get("window") else ())
        need = [rank_file(kind, r) for r in range(world) for kind in kinds]
        if state.get("strategy") == "deepspeed":
            if not os.path.isdir(os.path.join(directory, "deepspeed")):
                out.append("deepspeed/ (the DeepSpeed state) is missing")
        else:
            need += ["optimizer.pt", "scheduler.pt"]
        for rel in need:
            full = os.path.join(directory, rel)
            if any(p.startswith(rel) for p in out):
                continue
            if not os.path.isfile(full):
                out.append(f"{rel} is missing")
            elif os.path.getsize(full) == 0:
                out.append(f"{rel} is empty")
    for rel in _files(directory):  # every file a resume loads with torch.load must load
        if rel.endswith(".pt") and not any(p.startswith(rel) for p in out):
            why = _loads(os.path.join(directory, rel), rel)
            if why:
                out.append(why)
    return out


def newest_intact(checkpoints: list[tuple[int, str]], warn: Callable[[str], None]) -> tuple[str | None, list[str]]:
    """(the newest checkpoint without problems or None, the problems of the damaged newer ones).

    ``checkpoints``: ``(step, path)`` oldest first. Each damaged one newer than the one returned is renamed
    ``<name>.damaged`` and reported through ``warn``.
    """
    damaged: list[str] = []
    for step, path in reversed(checkpoints):
        found = problems(path)
        if not found:
            if damaged:
                warn(f"resuming from {os.path.basename(path)} (step {step}), the newest intact checkpoint")
            return path, damaged
        line = mark_damaged(path, found)
        damaged.append(line)
        warn(line)
    return None, damaged


def mark_damaged(path: str, reasons: list[str]) -> str:
    """Rename the checkpoint ``path`` to ``<name>.damaged`` (kept for inspection, never resumed or pruned), write
    the reasons into its ``DAMAGED_REASON`` file and return the line that names it with them."""
    moved = path + DAMAGED_SUFFIX
    try:
        if os.path.isdir(moved):  # an earlier damaged copy of the same step
            shutil.rmtree(moved)
        os.replace(path, moved)
    except OSError:
        moved = path
    line = f"checkpoint {os.path.basename(path)} is damaged: " + "; ".join(reasons) + f" (kept as {moved})"
    try:
        with open(os.path.join(moved, DAMAGED_REASON), "w") as fh:
            fh.write(line + "\n")
    except OSError:
        pass  # the warning still names the reasons
    return line
