"""Check a run before anything heavy loads; report every problem at once, each with its fix.

:func:`plan_run` looks at the config, the world size and the hardware, and returns a
:class:`RunPlan` (gradient accumulation, effective precision, the resolved DeepSpeed config) or
raises one :class:`~scaling.config.base.ConfigError` listing all problems:

* the global batch must equal micro batch × accumulation × world size;
* the precision must exist on the hardware (no bf16 on V100: ``torch.cuda.is_bf16_supported()``),
  and half-precision training must match the frozen backbones' dtype;
* a DeepSpeed JSON must agree with the training config (see :mod:`scaling.training.ds_config`);
* backbones must be a local directory with ``config.json``, a hub id or a shape name (the
  configs of ``configs/`` hold placeholders such as ``/path/to/llama-7b`` to set);
* ``data.train`` must be set; no data source training reads (``data.train/val``, ``data.features`` when used,
  ``data.index``) may be a ``/path/to/`` placeholder, and a local one must name existing shard files
  (:func:`scaling.data.shards.check_source`; remote ``pipe:``/``http(s)://``/``s3://``/``gs://`` and
  registered sources (:mod:`scaling.data.sources`) are not checked).
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import torch

from scaling.common.hints import features_split_hint
from scaling.config.base import ConfigError
from scaling.data.sources import checks_paths
from scaling.training import ds_config as dsc


@dataclasses.dataclass
class RunPlan:
    world_size: int
    accumulation: int  # micro batches per optimizer step on each rank
    precision: str  # effective compute precision: fp32 | bf16 | fp16
    device_type: str  # cpu | cuda
    deepspeed: dict[str, Any] | None = None  # resolved DeepSpeed config (None: plain DDP / one process)
    zero_stage: int = 0
    notes: list[str] = dataclasses.field(default_factory=list)  # non-fatal remarks for the log


def _divisors_note(global_batch: int, world: int) -> str:
    ok = [m for m in range(1, global_batch + 1) if global_batch % (m * world) == 0]
    return f"micro batches that work with {world} rank(s): {ok[:12]}" if ok else (
        f"no micro batch works: {global_batch} is not a multiple of {world} ranks; choose train.global_batch as a multiple of {world}"
    )


def check_batch(global_batch: int, micro_batch: int, world: int) -> list[str]:
    if global_batch % (micro_batch * world) == 0:
        return []
    return [
        f"train.global_batch={global_batch} is not divisible by train.micro_batch × world size = {micro_batch} × {world} "
        f"= {micro_batch * world}: gradient accumulation would not be a whole number. Change train.micro_batch "
        f"({_divisors_note(global_batch, world)}) or train.global_batch, or the number of GPUs"
    ]


def check_precision(precision: str, frozen_dtype: str, device_type: str, bf16_supported: bool | None = None) -> tuple[list[str], str, list[str]]:
    """(problems, effective precision, notes)."""
    problems: list[str] = []
    notes: list[str] = []
    if device_type != "cuda":
        if precision != "fp32":
            notes.append(f"train.precision={precision} on CPU: computing in fp32 (mixed precision needs a GPU)")
        return problems, "fp32", notes
    if bf16_supported is None:
        bf16_supported = torch.cuda.is_bf16_supported()
    gpu = torch.cuda.get_device_name() if torch.cuda.is_available() else "this GPU"
    if not bf16_supported and "bf16" in (precision, frozen_dtype):
        problems.append(
            f"{gpu} has no bfloat16 (train.precision={precision}, model.frozen_dtype={frozen_dtype}): on V100 use "
            f"train.precision=fp16 model.frozen_dtype=fp16 (and train.deepspeed=ds_configs/zero2_fp16.json with DeepSpeed)"
        )
    elif precision in ("fp16", "bf16") and frozen_dtype != precision:
        problems.append(
            f"train.precision={precision} but model.frozen_dtype={frozen_dtype}: the frozen backbones would be cast "
            f"at every matmul (or by DeepSpeed at start); set model.frozen_dtype={precision} (or train.precision={frozen_dtype})"
        )
    return problems, precision, notes


#: configs/demo_caption.yaml's folders, written by `scaling demo --export-backbones demo` (scaling/demo/export.py)
DEMO_EXPORT_PREFIX = "./demo/"
DEMO_EXPORT_HINT = "run `scaling demo --export-backbones demo --quick` in this folder first: it writes ./demo/"


def check_backbone(name: str, kind: str) -> list[str]:
    """A placeholder or missing local path is a problem; shape names and hub ids pass here."""
    from scaling.models.shapes import ENCODER_SHAPES, LLM_SHAPES

    shapes = LLM_SHAPES if kind == "llm" else ENCODER_SHAPES
    if name in shapes:
        return []
    if kind == "encoder":
        from scaling.models.encoders import loader_for, split_encoder_name

        prefix, ref = split_encoder_name(name)
        if prefix is not None:  # timm: / open_clip: / mavil: checks its own files and names
            try:
                loader = loader_for(prefix)
                if "/path/to/" in ref:
                    return [f"model.encoder={name!r} is a placeholder of the shipped configs: set its path to your "
                            f"local copy, e.g. {loader.example}"]
                return loader.check(ref)
            except ConfigError as err:
                return [str(err)]
    key = "model.llm" if kind == "llm" else "model.encoder"
    path = os.path.expanduser(name)
    looks_local = name.startswith((".", "/", "~")) or name.count("/") >= 2
    if looks_local and not os.path.isdir(path):
        hint = " (a placeholder of the shipped configs: set it to your local copy)" if name.startswith("/path/to/") else ""
        if name.startswith(DEMO_EXPORT_PREFIX):
            hint = f" ({DEMO_EXPORT_HINT})"
        example = "/data/models/llama-7b" if kind == "llm" else "/data/models/clip-vit-large-patch14"
        return [f"{key}={name!r} does not exist{hint}; pass a local Hugging Face directory, e.g. {key}={example}"]
    if looks_local and not os.path.isfile(os.path.join(path, "config.json")):
        return [f"{key}={name!r} has no config.json: point it at a Hugging Face model directory (save_pretrained output)"]
    if "/" not in name and not os.path.isdir(path):
        # not a hub id (owner/name), not a directory here: a mistyped shape name would otherwise cost a
        # minute of hub retries offline before failing without naming the shape names (a strict cutoff:
        # legacy hub ids without an owner, such as gpt2-medium, must still pass)
        from scaling.config.base import suggest

        hint = suggest(name, shapes, cutoff=0.75)
        if hint:
            return [f"{key}={name!r} is neither a shape name nor a local directory{hint}; shape names: {sorted(shapes)}"]
    return []


def check_data(cfg) -> list[str]:
    """The data sources the run will read: set, no placeholder, local ones naming existing shards."""
    from scaling.data.shards import check_index_path, check_source
    from scaling.data.sources import hint

    data = cfg.data
    if not data.train and not (data.use_features and data.features):
        return ["data.train is not set: give the training shards (e.g. data.train='shards/coco/train-{000000..000031}.tar') "
                f"or {hint()}"]
    problems = check_index_path(data.index)
    # the splits training reads (data.test is read by `scaling eval`, whose loader checks it the same way)
    cached = bool(data.use_features and data.features)
    splits = [s for s in ("train", "val") if getattr(data, s) or (s == "train" and cached)]
    if cached:  # cached features replace the splits' sources (scaling.data.stream)
        sources = [(data.features, s, "data.features") for s in splits]
    else:
        sources = [(getattr(data, s), s, f"data.{s}") for s in splits]
    for source, split, what in sources:
        for problem in check_source(str(source), split, data.index, what, allow_pipe=data.allow_pipe):
            if str(source).startswith(DEMO_EXPORT_PREFIX) and "does not exist" in problem:
                problem = f"{problem}; {DEMO_EXPORT_HINT}"
            if cached and "has no split" in problem:
                problem = features_split_hint(problem, split, data.features)
            if problem not in problems:
                problems.append(problem)
    return problems


def check_model_shapes(model_cfg, memory_check=None) -> list[str]:
    """The method's blocks against the backbones' real shapes, from their configs on the meta device (no
    weights are read): every problem at once, before anything loads. Then the whole model is built on the
    meta device, which raises any remaining block error (e.g. an option the mapper does not take)."""
    from scaling.models.backbones import llm_layout, load_encoder, load_llm
    from scaling.models.builder import build_model

    try:
        n_llm = llm_layout(load_llm(model_cfg.llm, model_cfg.frozen_dtype, trust_remote_code=model_cfg.trust_remote_code,
                                    meta=True)).n_layers
        n_enc = None
        if model_cfg.inject.get("name") != "none":
            n_enc = load_encoder(model_cfg.encoder, model_cfg.frozen_dtype, video_frames=model_cfg.video_frames,
                                 trust_remote_code=model_cfg.trust_remote_code, meta=True, **model_cfg.encoder_options).info.n_layers
    except ConfigError as err:
        return list(err.problems)
    problems = []
    ex, inject = model_cfg.extract, model_cfg.inject
    if n_enc is not None:
        if ex.layers:
            bad = [layer for layer in ex.layers if not -n_enc <= layer < n_enc]
            if bad:
                problems.append(f"model.extract.layers {bad} out of range: the encoder has {n_enc} layers")
        elif not 1 <= ex.n_levels <= n_enc:
            problems.append(f"model.extract.n_levels={ex.n_levels} but the encoder has {n_enc} layers: "
                            f"set model.extract.n_levels to 1..{n_enc}")
    if "n_llm_layers" in inject:
        n_inj, n_left = int(inject.get("n_llm_layers", 0)), int(inject.get("n_left", 0))
        if n_inj < 1 or n_left < 0 or n_inj + n_left > n_llm:
            problems.append(f"model.inject needs 1 <= n_llm_layers and n_llm_layers + n_left <= {n_llm} (the LLM's "
                            f"layers), got n_llm_layers={n_inj}, n_left={n_left}: lower model.inject.n_llm_layers "
                            f"or model.inject.n_left")
    if problems:
        return problems
    try:
        model = build_model(model_cfg, meta=True)
    except ConfigError as err:
        return list(err.problems)
    return memory_check(model) if memory_check is not None else []


def model_bytes(model) -> int:
    """Bytes the model needs to train, from its parameters (meta tensors are fine): every weight in its dtype, and
    for each trainable one its fp32 gradient and AdamW's two fp32 moments (activations not counted)."""
    total = 0
    for p in model.parameters():
        total += p.numel() * p.element_size() + (p.numel() * 12 if p.requires_grad else 0)
    for b in model.buffers():
        total += b.numel() * b.element_size()
    return total


def available_memory(device_type: str) -> tuple[int | None, str]:
    """(bytes the run can use on ``device_type``, what they are): the CPU's MemAvailable, or one GPU's total
    memory; None when unknown."""
    if device_type == "cuda" and torch.cuda.is_available():
        return torch.cuda.get_device_properties(torch.cuda.current_device()).total_memory, "GPU memory"
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024, "available RAM"
    except (OSError, ValueError, IndexError):
        pass
    return None, "memory"


def memory_problem(model, device_type: str, world_size: int = 1, shards_frozen: bool = False) -> list[str]:
    """A problem when the model's estimated training memory (:func:`model_bytes`) exceeds what the machine has: it
    would be killed while allocating, with no message. ``shards_frozen`` (ZeRO-3): the weights are split across
    ``world_size`` ranks."""
    need = model_bytes(model) / (world_size if shards_frozen else 1)
    have, what = available_memory(device_type)
    if have is None or need <= have:
        return []
    gb = 1024 ** 3
    big = sorted(((p.numel(), n) for n, p in model.named_parameters()), reverse=True)[:3]
    return [f"the model needs about {need / gb:.1f} GB to train (weights, and gradients + AdamW states of the trainable "
            f"ones; activations not counted), more than this machine's {have / gb:.1f} GB of {what}: it would be killed "
            f"while allocating. The largest parameters: " + ", ".join(f"{n} ({c:,})" for c, n in big)
            + ". Check the sizes in model.map / model.inject (e.g. model.map.n_queries), or use a machine with more memory"]


def check_val_size(cfg, world_size: int) -> list[str]:
    """The validation loss reads ``data.val`` in batches of ``train.micro_batch`` on every rank (the same count on each,
    ``data.fraction`` applied): a split smaller than one such batch per rank would fail every evaluation. Counted from
    the shards' index (shards without one are not read here)."""
    data = cfg.data
    if not data.val or not checks_paths(data.val):  # no split, or a registered source (no shards to count)
        return []
    from scaling.data.shards import resolve_split
    from scaling.data.stream import _source_for
    from scaling.data.subset import kept_positions

    try:
        source, split = _source_for(cfg, "val")
        src = resolve_split(source, split, data.index, need_ids=data.fraction < 1.0, what="data.val",
                            allow_pipe=data.allow_pipe, scan=False)
    except (ConfigError, OSError):
        return []  # reported by check_data or when the loader opens it
    if any(sh.num_samples == 0 for sh in src.shards):
        return []  # a shard without an index entry: its count is not known without reading it
    if data.fraction < 1.0:
        if any(sh.ids is None for sh in src.shards):
            return []
        total = sum(len(kept_positions(sh.ids, data.fraction, data.subset_seed)) for sh in src.shards)
    else:
        total = src.num_samples
    need = world_size * cfg.train.micro_batch
    if total < need:
        return [f"data.val={data.val!r} holds {total} sample(s)" + (f" in its {data.fraction:.2%} subset (data.fraction)"
                if data.fraction < 1.0 else "") + f", fewer than one validation batch per rank (world size {world_size} "
                f"x train.micro_batch {cfg.train.micro_batch} = {need}): every validation would fail. Use a larger "
                f"validation split, a smaller train.micro_batch, or data.val=null"]
    return []


def plan_run(cfg, world_size: int, device_type: str, bf16_supported: bool | None = None, check_paths: bool = True) -> RunPlan:
    """Validate ``cfg`` for ``world_size`` ranks on ``device_type``; raise one ConfigError listing all problems."""
    t = cfg.train
    problems = check_batch(t.global_batch, t.micro_batch, world_size)
    p_problems, precision, notes = check_precision(t.precision, cfg.model.frozen_dtype, device_type, bf16_supported)
    problems += p_problems
    if cfg.data.features and not cfg.data.use_features:
        notes.append(f"data.features={cfg.data.features} is set but data.use_features=false: training runs the "
                     "encoder on the media (set data.use_features=true to train from the cached features)")
    if check_paths:
        backbone_problems = check_backbone(cfg.model.llm, "llm")
        if cfg.model.inject.get("name") != "none":
            backbone_problems += check_backbone(cfg.model.encoder, "encoder")
        problems += backbone_problems
        if not backbone_problems:
            problems += check_model_shapes(cfg.model, lambda model: memory_problem(
                model, device_type, world_size, shards_frozen=bool(t.deepspeed)))
        problems += check_data(cfg)
        if not problems:
            problems += check_val_size(cfg, world_size)
    ds_resolved, stage = None, 0
    if t.deepspeed:
        try:
            raw = dsc.load(t.deepspeed)
        except ConfigError as err:
            problems += err.problems
            raw = None
        if raw is not None:
            owned = dsc.owned_values(t.global_batch, t.micro_batch, world_size, t.clip, precision)
            problems += dsc.check(raw, owned, f"train.deepspeed={t.deepspeed}")
            ds_resolved = dsc.resolve(raw, owned)
            stage = dsc.zero_stage(raw)
            if stage == 3 and cfg.model.compile_encoder:
                problems.append("model.compile_encoder is not supported under ZeRO-3 (its hooks gather the partitioned "
                                "encoder weights inside the compiled forward): use ZeRO-2 or set model.compile_encoder=false")
            if stage == 3 and cfg.model.fp8_llm:
                problems.append("model.fp8_llm needs the frozen LLM's weights whole on each rank, ZeRO-3 partitions them: "
                                "use a ZeRO-2 config or set model.fp8_llm=false")
            if precision == "fp32" and t.precision != "fp32":
                notes.append("DeepSpeed runs in fp32 here (fp16/bf16 sections filled as disabled)")
        try:
            import deepspeed  # noqa: F401
        except ImportError:
            problems.append("train.deepspeed is set but DeepSpeed is not installed: pip install deepspeed (or drop train.deepspeed for DDP)")
    if problems:
        raise ConfigError(problems)
    return RunPlan(
        world_size=world_size,
        accumulation=t.global_batch // (t.micro_batch * world_size),
        precision=precision,
        device_type=device_type,
        deepspeed=ds_resolved,
        zero_stage=stage,
        notes=notes,
    )
