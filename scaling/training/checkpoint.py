"""Training checkpoints (small, atomic, exactly resumable) and adapter files.

Layout of a run directory::

    RUN/config.yaml                     the resolved config
    RUN/checkpoints/latest              text: the name of the newest complete checkpoint
    RUN/checkpoints/step_000500/
        adapter.safetensors             trainable weights (fp32) + metadata: resolved config,
                                        backbone fingerprints, step, method, last metrics
        trainer_state.json              step, epoch, position in the epoch, world size, micro batch and
                                        accumulation, skipped steps, samples/tokens seen (exact at
                                        every checkpoint), train seconds, metrics, best
        rng_rank00000.pt ...            python / numpy / torch / cuda RNG states, one file per rank
        data_rank00000.pt ...           the loader's state_dict() (exact mid-epoch position), per rank
        window_rank00000.pt ...         the sums of the steps since the last log line (loss, grad norms,
                                        samples, tokens), per rank: the first log line after a resume
                                        covers the same steps as without the interruption
        optimizer.pt scheduler.pt       without DeepSpeed: AdamW, LambdaLR and GradScaler states
        scaler.pt
        deepspeed/                      with DeepSpeed: engine.save_checkpoint (ZeRO partitions of the
                                        optimizer and trainable weights; frozen weights excluded)
    RUN/best/adapter.safetensors        the adapter at the best value of the selection metric

A checkpoint is written into ``step_000500.tmp/`` (every file fsynced), a ``manifest.json`` of checksums is
added once every rank has written its part (:mod:`scaling.training.manifest`; verified before a resume,
which falls back to the newest intact checkpoint), the directory is renamed, then ``latest`` is replaced atomically and all but the newest ``train.keep_last`` are deleted: a job
killed while saving leaves the previous checkpoint intact. Everything is read back with
``safetensors`` or ``torch.load(weights_only=True)`` (DeepSpeed's own files included: its loader is
routed through a weights-only load that allows its three bookkeeping classes). The directory must be
on a file system that every node sees.

:func:`load_adapter` rebuilds a model from an adapter (backbone paths overridable), refuses backbones
whose fingerprints differ from the ones it was trained on, and loads the weights.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import warnings
from collections.abc import Iterable
from typing import Any

import numpy as np
import torch

from scaling.common.io import atomic_path, atomic_write
from scaling.common.run_layout import ADAPTER, CHECKPOINTS, LATEST, STATE, checkpoints_dir, rank_file, step_name
from scaling.config.base import ConfigError
from scaling.training import manifest
from scaling.training.manifest import fsync_path
from scaling.training.weights_only import deepspeed_safe_globals, weights_only_deepspeed_load

# the run directory's names (scaling.common.run_layout), re-exported: ckpt.ADAPTER, ckpt.step_name(...)
__all__ = ["ADAPTER", "CHECKPOINTS", "LATEST", "STATE", "checkpoints_dir", "deepspeed_safe_globals", "rank_file",
           "step_name", "weights_only_deepspeed_load"]

ADAPTER_FORMAT = "scaling-adapter/1"
CHECKPOINT_FORMAT = 2  # trainer_state.json "format": written with a manifest (see scaling.training.manifest)


# ------------------------------------------------------------------------------------ small I/O


def write_text_atomic(path: str, text: str) -> None:
    with atomic_write(path, fsync=True) as fh:
        fh.write(text)


def write_json_atomic(path: str, obj: Any) -> None:
    write_text_atomic(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def read_json(path: str) -> Any:
    with open(path) as fh:
        return json.load(fh)


def save_pt(obj: Any, path: str) -> None:
    with atomic_path(path, fsync=True) as tmp:
        torch.save(obj, tmp)


def load_pt(path: str, map_location: str | torch.device = "cpu") -> Any:
    return torch.load(path, map_location=map_location, weights_only=True)


# ------------------------------------------------------------------------------------ RNG states


def rng_state() -> dict[str, Any]:
    """Python, numpy, torch and CUDA RNG states as weights-only-loadable objects."""
    py = random.getstate()
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    state = {
        "python": [py[0], list(py[1]), py[2]],
        "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "gauss": float(gauss)},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        cuda = state["cuda"]
        if len(cuda) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda)
        else:  # another GPU count per node: keep this process's own device state
            torch.cuda.set_rng_state(cuda[min(torch.cuda.current_device(), len(cuda) - 1)])


# ------------------------------------------------------------------------------------ adapters


BACKBONE_KEYS = ("llm", "encoder")
_LOADER_PREFIXES = ("timm:", "open_clip:", "mavil:")


def _backbone_path(value: str) -> tuple[str, str]:
    """(the part of a ``model.llm``/``model.encoder`` value before its path, the path): ``timm:NAME@FILE`` →
    (``timm:NAME@``, ``FILE``); ``mavil:FILE`` → (``mavil:``, ``FILE``); a directory → (``""``, the directory)."""
    for prefix in _LOADER_PREFIXES:
        if value.startswith(prefix):
            rest = value[len(prefix):]
            if "@" in rest:
                name, path = rest.split("@", 1)
                return f"{prefix}{name}@", path
            return prefix, rest
    return "", value


def absolute_backbone(value) -> str | None:
    """``value`` with its local path made absolute and resolved, when that path exists from here; else None."""
    if not isinstance(value, str) or not value:
        return None
    head, path = _backbone_path(value)
    full = os.path.expanduser(path)
    if not os.path.exists(full):
        return None
    resolved = head + os.path.realpath(full)
    return resolved if resolved != value else None


def relocate_backbones(config: dict, meta: dict, given: dict[str, str | None], warn) -> list[str]:
    """Point ``config["model"]`` at the absolute backbone paths stored at training time where the paths as given
    do not exist from the current folder (e.g. ``./demo/llm`` loaded elsewhere), saying so through ``warn``.
    ``given``: the ``--llm``/``--encoder`` values, which always win. Returns one problem per backbone that is
    found neither way, each naming the flag that fixes it."""
    model = config.setdefault("model", {})
    stored = meta.get("backbones_resolved") or {}
    problems = []
    for key in BACKBONE_KEYS:
        value = model.get(key)
        if given.get(key) or not isinstance(value, str):
            continue
        head, path = _backbone_path(value)
        local = path.startswith((".", "/", "~"))
        if not local or os.path.exists(os.path.expanduser(path)):
            continue
        alt = stored.get(key)
        if alt and os.path.exists(_backbone_path(alt)[1]):
            warn(f"model.{key} {value!r} does not exist from {os.getcwd()}; using {alt!r}, where it was at training time")
            model[key] = alt
            continue
        problems.append(f"model.{key} {value!r} does not exist from {os.getcwd()}"
                        + (f" (nor at {alt!r}, where it was at training time)" if alt else "")
                        + f"; pass --{key} PATH (the same weights elsewhere on disk; fingerprints are checked)")
    return problems


def save_adapter(path: str, tensors: dict[str, torch.Tensor], config: dict, fingerprints: dict, **info: Any) -> None:
    """One safetensors file: fp32 trainable weights; metadata holds config, fingerprints and ``info``."""
    from safetensors.torch import save_file

    meta = {
        "format": ADAPTER_FORMAT,
        "config": json.dumps(config, default=str),
        "fingerprints": json.dumps(fingerprints),
        "method": str((config.get("model") or {}).get("method")),
    }
    resolved = {key: absolute_backbone((config.get("model") or {}).get(key)) for key in BACKBONE_KEYS}
    if any(resolved.values()):  # the paths as given stay in the config; these let another folder find them
        meta["backbones_resolved"] = json.dumps({k: v for k, v in resolved.items() if v})
    meta.update({k: json.dumps(v, default=str) for k, v in info.items()})
    clean = {k: v.detach().to("cpu", torch.float32).contiguous() for k, v in tensors.items()}
    with atomic_path(path, fsync=True) as tmp:
        save_file(clean, tmp, metadata=meta)


def read_adapter(path: str, device: str | torch.device = "cpu") -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """(tensors, metadata with JSON values decoded)."""
    from safetensors import safe_open

    path = resolve_adapter_path(path)
    tensors = {}
    with safe_open(path, framework="pt", device=str(device)) as fh:
        raw = fh.metadata() or {}
        for key in fh.keys():
            tensors[key] = fh.get_tensor(key)
    if raw.get("format") != ADAPTER_FORMAT:
        raise ConfigError(f"{path} is not a scaling adapter (metadata format {raw.get('format')!r}, expected {ADAPTER_FORMAT!r})")
    meta: dict[str, Any] = {"format": raw["format"]}
    for key, value in raw.items():
        if key == "format":
            continue
        try:
            meta[key] = json.loads(value)
        except json.JSONDecodeError:
            meta[key] = value
    return tensors, meta


def format_1_prompt_width(stored: dict, shape_of) -> list[str]:
    """Config format 1 built eP-ALM's prompt MLP d/4 wide when ``model.finetune.prompt_mlp_hidden`` was unset (d
    since): the override that keeps the width the weights have (``shape_of(name)``: a trained tensor's shape)."""
    from scaling.config.versions import stored_format

    finetune = (stored.get("model") or {}).get("finetune") or {}
    if stored_format(stored) >= 2 or finetune.get("prompt_mlp_hidden") is not None:
        return []
    shape = shape_of("prompt.mlp.0.weight")  # Linear(d, hidden): [hidden, d]
    return [f"model.finetune.prompt_mlp_hidden={shape[0]}"] if shape and shape[0] != shape[1] else []


def adapter_tensor_shape(path: str, name: str) -> tuple[int, ...] | None:
    """The shape of one tensor of an adapter file, without reading it (None when absent)."""
    from safetensors import safe_open

    with safe_open(path, framework="pt") as fh:
        return tuple(fh.get_slice(name).get_shape()) if name in fh.keys() else None


def read_adapter_meta(path: str) -> dict[str, Any]:
    """The metadata of an adapter file (JSON values decoded), without reading its tensors."""
    from safetensors import safe_open

    with safe_open(path, framework="pt") as fh:
        raw = fh.metadata() or {}
    meta: dict[str, Any] = {}
    for key, value in raw.items():
        try:
            meta[key] = json.loads(value) if key != "format" else value
        except json.JSONDecodeError:
            meta[key] = value
    return meta


def resolve_adapter_path(path: str) -> str:
    """An adapter file, a checkpoint directory, a ``checkpoints/`` directory or a run directory → the adapter file.
    A file that is not a safetensors file (a shard, an index, a PyTorch checkpoint) is refused saying what it is."""
    if os.path.isfile(path):
        what = not_an_adapter(path)
        if what:
            raise ConfigError(
                f"{path!r} is {what}, not a checkpoint: --checkpoint (and `scaling inspect`) expects a run directory, a checkpoint "
                f"directory (RUN/checkpoints/step_N) or an adapter .safetensors file"
                + (" (the data to evaluate goes to --data)" if "shard" in what or "index" in what else "")
                + (" (convert it with `scaling convert`)" if "PyTorch" in what else ""))
        return path
    if os.path.isdir(checkpoints_dir(path)) and list_checkpoints(checkpoints_dir(path)):
        # a run directory always means its newest intact checkpoint, never a file someone put in the folder
        return _newest_intact_adapter(path)
    if os.path.isfile(os.path.join(path, ADAPTER)):
        return os.path.join(path, ADAPTER)
    ckpt = find_latest(path) if os.path.isdir(path) else None
    if ckpt and os.path.isfile(os.path.join(ckpt, ADAPTER)):
        return os.path.join(ckpt, ADAPTER)
    missing = _missing(path)
    if missing:
        raise ConfigError(f"no adapter: {missing}")
    raise ConfigError(
        f"no adapter at {path!r}: pass an adapter .safetensors file, a checkpoint directory (RUN/checkpoints/step_N) "
        f"or a run directory with checkpoints (convert other formats with `scaling convert CKPT --to adapter OUT`)"
    )


def not_an_adapter(path: str) -> str | None:
    """What a file is when it cannot be a safetensors adapter (its first bytes say), or None when it may be one."""
    import struct

    try:
        with open(path, "rb") as fh:
            head = fh.read(512)
            size = os.fstat(fh.fileno()).st_size
    except OSError:
        return None
    if len(head) >= 262 and head[257:262] == b"ustar":
        return "a tar archive (a webdataset shard of samples?)"
    if head[:2] == b"PK":
        return "a zip archive (a PyTorch .pt/.bin checkpoint?)"
    if head.lstrip()[:1] in (b"{", b"["):
        return "a JSON file (a shard index.json?)" if b'"splits"' in head or b'"format"' in head else "a JSON file"
    if len(head) < 8:
        return f"a {size}-byte file (too short for a safetensors header)"
    n = struct.unpack("<Q", head[:8])[0]
    if n > size - 8 or (len(head) > 8 and head[8:9] != b"{"):
        return "not a safetensors file (its first 8 bytes are no header length followed by a JSON header)"
    return None


def _newest_intact_adapter(run: str) -> str:
    """The adapter of the newest checkpoint of ``run`` whose files pass their manifest (read-only: nothing is
    renamed, unlike a resume); damaged newer ones and a loose ``RUN/adapter.safetensors`` are named in a warning."""
    loose = os.path.join(run, ADAPTER)
    skipped = []
    for step, ckpt in reversed(list_checkpoints(checkpoints_dir(run))):
        found = manifest.problems(ckpt)
        if found or not os.path.isfile(os.path.join(ckpt, ADAPTER)):
            skipped.append(f"{os.path.basename(ckpt)} ({'; '.join(found) or 'no adapter'})")
            continue
        if skipped:
            warnings.warn(f"{run}: skipping damaged checkpoints {', '.join(skipped)}; using step {step}", stacklevel=3)
        if os.path.isfile(loose):
            warnings.warn(f"{loose} is ignored: --checkpoint {run} means the run's newest intact checkpoint "
                          f"({os.path.basename(ckpt)}); pass the file itself to use it", stacklevel=3)
        return os.path.join(ckpt, ADAPTER)
    raise ConfigError(f"no intact checkpoint in {checkpoints_dir(run)}: " + "; ".join(skipped)
                      + " — restore the files from a backup, or pass an adapter .safetensors file")


def load_adapter(
    path: str,
    device: str | torch.device = "cpu",
    llm: str | None = None,
    encoder: str | None = None,
    overrides: Iterable[str] = (),
    check_fingerprints: bool = True,
    trust_remote_code: bool = False,
):
    """Build the model an adapter was trained with and load its weights → ``(model, cfg)``.

    ``llm``/``encoder`` replace the stored backbone paths (same weights elsewhere on disk);
    ``overrides`` are ``model.*``/``eval.*`` ``key=value`` strings (e.g. ``model.frozen_dtype=fp32``).
    Backbones whose fingerprints differ from the training ones are refused with what differs.
    The stored config never grants trust (:mod:`scaling.config.stored`): the backbones' remote code runs only
    with ``trust_remote_code=True`` (or a ``model.trust_remote_code=true`` override), and stored ``pipe:`` data
    sources are dropped.
    """
    from scaling.config import config_from_dict
    from scaling.config.base import apply_overrides, drop_removed_keys
    from scaling.config.stored import untrusted, upgrade
    from scaling.config.versions import upgrade_format
    from scaling.models.builder import build_model
    from scaling.training.fingerprint import model_fingerprints

    tensors, meta = read_adapter(path)
    extra = format_1_prompt_width(meta["config"], lambda name: tuple(tensors[name].shape) if name in tensors else None)
    data = drop_removed_keys(meta["config"], lambda msg: warnings.warn(msg, stacklevel=2))
    data = upgrade(untrusted(data, lambda msg: warnings.warn(msg, stacklevel=2)))
    data = upgrade_format(data, lambda msg: warnings.warn(msg, stacklevel=2), what=f"adapter {path}")
    extra += list(overrides)
    if trust_remote_code:
        extra.append("model.trust_remote_code=true")
    if llm:
        extra.append(f"model.llm={llm}")
    if encoder:
        extra.append(f"model.encoder={encoder}")
    missing = relocate_backbones(data, meta, {"llm": llm, "encoder": encoder},
                                 lambda msg: warnings.warn(msg, stacklevel=2))
    if missing:
        raise ConfigError(f"cannot load the adapter {path}: " + "; ".join(missing))
    cfg = config_from_dict(apply_overrides(data, extra))
    torch.manual_seed(cfg.train.seed)  # shape-name backbones: the same random weights as in training
    model = build_model(cfg.model, device)
    if check_fingerprints:
        check_backbones(path, meta, model_fingerprints(model), cfg.model)
    load_trainable(model, tensors, source=path)
    model.eval()
    return model, cfg


def check_backbones(path: str, meta: dict, current: dict, model_cfg) -> None:
    """Refuse backbones whose fingerprints differ from the ones the adapter at ``path`` (metadata ``meta``) was
    trained on; one message for loading an adapter and for resuming a run."""
    from scaling.training.fingerprint import compare

    diffs = compare(meta.get("fingerprints") or {}, current)
    if diffs:
        raise ConfigError(
            [f"adapter {path} was trained on other backbones than model.llm={model_cfg.llm!r}, "
             f"model.encoder={model_cfg.encoder!r}:"] + diffs
            + ["pass the backbones it was trained on (load_adapter(..., llm=PATH, encoder=PATH) or "
               "model.llm=/model.encoder= overrides); `scaling inspect ADAPTER` shows them"]
        )


def load_trainable(model, tensors: dict[str, torch.Tensor], source: str = "the adapter") -> None:
    """Copy trainable weights into ``model``; every trainable parameter must be present, nothing else."""
    own = dict(model.trainable_named_parameters())
    missing = sorted(set(own) - set(tensors))
    unexpected = sorted(set(tensors) - set(own))
    problems = []
    if missing:
        problems.append(f"{source} lacks {len(missing)} trainable weight(s) of this model, e.g. {missing[:3]}")
    if unexpected:
        problems.append(f"{source} holds {len(unexpected)} weight(s) this model does not train, e.g. {unexpected[:3]}")
    for name in sorted(set(own) & set(tensors)):
        if tuple(own[name].shape) != tuple(tensors[name].shape):
            problems.append(f"{name}: shape {tuple(tensors[name].shape)} in {source}, {tuple(own[name].shape)} in the model")
    if problems:
        raise ConfigError(problems + ["the method or its sizes differ from the ones the weights were trained with"])
    with torch.no_grad():
        for name, p in own.items():
            p.copy_(tensors[name].to(p.device, p.dtype))


# ------------------------------------------------------------------------------------ directories


def list_checkpoints(root: str) -> list[tuple[int, str]]:
    """Complete checkpoints under ``root`` (a ``checkpoints/`` directory), oldest first."""
    if not os.path.isdir(root):
        return []
    out = []
    for name in os.listdir(root):
        if name.startswith("step_") and not name.endswith(".tmp") and os.path.isfile(os.path.join(root, name, STATE)):
            try:
                out.append((int(name[5:]), os.path.join(root, name)))
            except ValueError:
                continue
    return sorted(out)


def find_latest(path: str) -> str | None:
    """The newest complete checkpoint of a run directory or ``checkpoints/`` directory (``latest`` first)."""
    for root in (checkpoints_dir(path), path):
        pointer = os.path.join(root, LATEST)
        if os.path.isfile(pointer):
            with open(pointer) as fh:
                name = fh.read().strip()
            cand = os.path.join(root, name)
            if name and os.path.isfile(os.path.join(cand, STATE)):
                return cand
        found = list_checkpoints(root)
        if found:
            return found[-1][1]
    return None


def find_resumable(path: str, warn) -> tuple[str | None, str | None]:
    """(the newest intact checkpoint of a run directory, or None; an error when every checkpoint is damaged).

    Damaged newer checkpoints are renamed ``step_N.damaged`` and named through ``warn`` with what was wrong
    (:mod:`scaling.training.manifest`)."""
    found = list_checkpoints(checkpoints_dir(path))
    intact, damaged = manifest.newest_intact(found, warn)
    if intact is None and damaged:
        return None, "\n".join(
            [f"no intact checkpoint to resume in {checkpoints_dir(path)}:"] + damaged
            + ["restore the files from a backup, or start afresh with another train.output_dir (or train.resume=never "
               "after moving the damaged checkpoints away)"])
    return intact, None


def _missing(path: str) -> str | None:
    """Why ``path`` cannot be a checkpoint because it does not exist (``RUN/best``: when it is written), or None."""
    if os.path.exists(path):
        return None
    why = f"{path!r} does not exist"
    if os.path.basename(os.path.normpath(path)) == "best":
        why += ("; RUN/best is written only when the periodic evaluation (train.eval_every, data.val with references) "
                "scores eval.metric: a synthetic source (scaling.data.sources) has none; use RUN or RUN/checkpoints/step_N")
    return why


def resolve_checkpoint(path: str) -> str:
    """A checkpoint directory from a checkpoint, ``checkpoints/`` or run directory."""
    if os.path.isfile(os.path.join(path, STATE)):
        return path
    missing = _missing(path)
    if missing:
        raise ConfigError(f"no checkpoint: {missing}")
    found = find_latest(path)
    if found is None:
        raise ConfigError(f"no checkpoint found at {path!r} (expected RUN/checkpoints/step_N/{STATE})")
    return found


def prune(root: str, keep_last: int, protect: Iterable[str] = ()) -> list[str]:
    """Delete all but the newest ``keep_last`` checkpoints (never one in ``protect``)."""
    keep = {os.path.abspath(p) for p in protect}
    found = list_checkpoints(root)
    removed = []
    for _, path in found[: max(0, len(found) - keep_last)]:
        if os.path.abspath(path) not in keep:
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed


def clean_partial(root: str) -> None:
    """Remove ``*.tmp`` directories left by a job killed while saving."""
    if not os.path.isdir(root):
        return
    for name in os.listdir(root):
        if name.endswith(".tmp") and os.path.isdir(os.path.join(root, name)):
            shutil.rmtree(os.path.join(root, name), ignore_errors=True)


def begin(root: str, step: int) -> str:
    """Create (empty) the temporary directory of the checkpoint of ``step``; returns its path."""
    tmp = os.path.join(root, step_name(step) + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    return tmp


def mark_format(ckpt_dir: str) -> None:
    """Record in ``trainer_state.json`` that this checkpoint has a manifest (its absence is then damage, not an
    older format) and whether it has log-window files (then every rank's must be there)."""
    path = os.path.join(ckpt_dir, STATE)
    if not os.path.isfile(path):
        return
    state = read_json(path)
    state["format"] = CHECKPOINT_FORMAT
    state["window"] = os.path.isfile(os.path.join(ckpt_dir, rank_file("window", 0)))
    write_json_atomic(path, state)


def commit(root: str, step: int, keep_last: int) -> str:
    """Rename the temporary directory into place, point ``latest`` at it, prune old ones."""
    tmp = os.path.join(root, step_name(step) + ".tmp")
    final = os.path.join(root, step_name(step))
    mark_format(tmp)
    manifest.write(tmp)  # checksums of every rank's files (each fsynced) before the rename
    if os.path.isdir(final):  # the same step saved again (e.g. preemption right after a periodic save)
        shutil.rmtree(final)
    os.replace(tmp, final)
    fsync_path(root)  # the rename itself
    write_text_atomic(os.path.join(root, LATEST), step_name(step) + "\n")
    prune(root, keep_last, protect=[final])
    return final


def update_state(ckpt_dir: str, fields: dict[str, Any]) -> None:
    """Rewrite fields of a committed checkpoint's ``trainer_state.json`` (atomically)."""
    path = os.path.join(ckpt_dir, STATE)
    state = read_json(path)
    state.update(fields)
    write_json_atomic(path, state)
    manifest.refresh(ckpt_dir, [STATE])


def write_rank_files(ckpt_dir: str, rank: int, loader_state: Any, window: dict | None = None) -> None:
    save_pt(rng_state(), os.path.join(ckpt_dir, rank_file("rng", rank)))
    save_pt(loader_state, os.path.join(ckpt_dir, rank_file("data", rank)))
    if window is not None:
        save_pt(window, os.path.join(ckpt_dir, rank_file("window", rank)))


def read_rank_files(ckpt_dir: str, rank: int) -> tuple[dict, Any]:
    rng = load_pt(os.path.join(ckpt_dir, rank_file("rng", rank)))
    data = load_pt(os.path.join(ckpt_dir, rank_file("data", rank)))
    return rng, data


def read_window(ckpt_dir: str, rank: int) -> dict | None:
    """The trainer's log window saved with a checkpoint (None for checkpoints written without one)."""
    path = os.path.join(ckpt_dir, rank_file("window", rank))
    return load_pt(path) if os.path.isfile(path) else None
