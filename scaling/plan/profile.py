"""The facts the planner needs about a config's model, counted at its real shapes without allocating.

The model is built on the ``meta`` device (parameter counts per component, as ``scaling methods``), then
moved to a fake device (:mod:`scaling.plan.measure`) where a training step at micro-batch 1 and 2 records:

- the bytes autograd keeps for the backward pass (``torch.autograd.graph.saved_tensors_hooks``), per region:
  the mapper / injection / prompt (``interface``), each LLM decoder layer, the loss head; parameters are not
  counted (they are model state); the two batch sizes give a per-sample slope and a batch-independent part
  (rotary tables, masks);
- the FLOPs of the step (``torch.utils.flop_counter.FlopCounterMode``), forward per region and in total;
- the encoder's forward working set (:class:`~scaling.plan.measure.PeakTracker` around the frozen encoder).

Placeholder backbones of the shipped configs (``/path/to/llama-7b``, ``/path/to/clip-vit-large-patch14``,
``timm:NAME@/path/to/weights``, ``mavil:/path/to/mavil.pth``) are planned with the shape they name
(:data:`PLACEHOLDER_SHAPES`); the profile says so.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import re
from collections import defaultdict
from typing import Any

import torch

# basename of a placeholder backbone path (configs/generate.py) -> the shape name of scaling/models/shapes.py
PLACEHOLDER_SHAPES = {
    "llama-7b": "llama-7b", "llama-13b": "llama-13b", "opt-6.7b": "opt-6.7b", "opt-2.7b": "opt-2.7b",
    "clip-vit-large-patch14": "clip-vit-l14", "clip-vit-base-patch16": "clip-vit-b16", "vit-base-patch16-224": "vit-b16",
    "timesformer-base": "timesformer-b", "ast-audioset": "ast-b",
}


@dataclasses.dataclass
class Profile:
    """Counted facts of one model config at one text length (all byte figures in the frozen dtype)."""

    llm: str  # what was built (shape name or path)
    encoder: str
    notes: list[str]
    params: dict[str, dict[str, int]]  # component -> {"trainable", "frozen"}
    frozen_params: int
    trainable_params: int
    largest_layer_params: int  # the largest decoder layer (ZeRO-3's gathered working set)
    n_layers: int
    hidden: int
    vocab: int
    seq_len: int  # LLM positions per sample: prefix + text
    prefix_len: int
    text_len: int
    n_targets: int  # target tokens per sample the loss reads (answer + EOS, at most the text)
    frozen_bytes: int  # bytes per frozen parameter
    media_bytes: int  # one sample's media as collated (fp32), 0 for the blind model
    feature_bytes: int  # one sample's cached features (frozen dtype)
    backprop_layers: list[int]  # decoder layers whose activations are kept for backward
    injection: str  # first-layer | inner | cross-attention | none
    # activations kept for backward, bytes = slope * batch + base, per region
    saved_layer: dict[int, tuple[float, float]]
    saved_interface: tuple[float, float]
    saved_head: tuple[float, float]
    encoder_peak: tuple[float, float]  # the frozen encoder's forward working set (media in, features out)
    layer_input_bytes: int  # one sample's hidden states at a decoder layer's input (what checkpointing keeps)
    flops_total: tuple[float, float]  # forward + backward of the step, flops = slope * batch + base
    flops_layer_fwd: dict[int, tuple[float, float]]  # forward of each decoder layer (recomputed with checkpointing)

    def at(self, pair: tuple[float, float], batch: int) -> float:
        return pair[0] * batch + pair[1]


def resolve_backbone(name: str, kind: str) -> tuple[str, str | None]:
    """(name to build, note) for a config's backbone: a placeholder path that does not exist is replaced by the
    shape it names, a ``timm:``/``mavil:`` weight path that does not exist is dropped (the architecture needs none)."""
    if kind == "encoder" and ":" in name and not re.match(r"^[A-Za-z]:[\\/]", name):
        prefix, ref = name.split(":", 1)
        if prefix == "mavil":
            return ("mavil:base", f"encoder {name!r}: planned as mavil:base (no weights read)") if not os.path.exists(ref) else (name, None)
        if "@" in ref:
            arch, path = ref.split("@", 1)
            if not os.path.exists(path):
                return f"{prefix}:{arch}", f"encoder weights {path!r} do not exist: planned with the architecture {prefix}:{arch}"
        return name, None
    if os.path.exists(name):
        return name, None
    base = os.path.basename(os.path.normpath(name))
    shape = PLACEHOLDER_SHAPES.get(base)
    if shape and shape != name:
        return shape, f"{kind} {name!r} does not exist: planned with the shape {shape!r} (scaling/models/shapes.py)"
    return name, None


def _media_shape(info) -> tuple[int, ...]:
    if info.modality == "audio":
        return (info.max_length, info.num_mel_bins)
    size = info.image_size or 224
    if info.modality == "video":
        return (info.num_frames or 8, 3, size, size)
    return (3, size, size)


def _fit(a: float, b: float) -> tuple[float, float]:
    """(slope, base) through the figures at batch 1 and 2."""
    return (b - a, 2 * a - b)


def build_profile(cfg, text_len: int | None = None, n_targets: int | None = None) -> Profile:
    """Profile ``cfg`` (an ExperimentConfig): build on meta, count, run fake steps at micro-batch 1 and 2."""
    import transformers

    from scaling.config.base import to_dict
    from scaling.config.model import model_config
    from scaling.models.builder import parameter_table
    from scaling.plan.measure import fake_model

    transformers.utils.logging.set_verbosity_error()
    notes: list[str] = []
    llm, note = resolve_backbone(cfg.model.llm, "llm")
    notes += [note] if note else []
    encoder, note = resolve_backbone(cfg.model.encoder, "encoder")
    notes += [note] if note else []
    data = to_dict(cfg.model)
    data.update(llm=llm, encoder=encoder, kernels="torch", compile_encoder=False, fp8_llm=False, fused_llm="off")
    mcfg = model_config(data)
    model, mode = fake_model(mcfg)
    table = {k: {"trainable": t, "frozen": f} for k, (t, f) in parameter_table(model).items()}
    frozen = sum(v["frozen"] for v in table.values())
    trainable = sum(v["trainable"] for v in table.values())
    layout = model.layout
    largest = max(sum(p.numel() for p in layer.parameters()) for layer in layout.layers)
    text_len = text_len or cfg.data.max_text_len
    n_targets = min(n_targets or text_len - 1, text_len - 1)
    info = model.extractor.encoder.info if model.extractor is not None else None
    media_shape = _media_shape(info) if info is not None else None
    feat = 0
    if model.extractor is not None:
        ex = model.extractor
        feat = ex.n_levels * ex.n_tokens * info.hidden_size * _dtype_bytes(mcfg.frozen_dtype)
    # batch 2: the forward only (saved tensors are recorded there); FLOPs are linear in the batch (counted at 1)
    runs = [_record(model, mode, b, text_len, n_targets, media_shape, backward=b == 1) for b in (1, 2)]
    r1, r2 = runs
    kind = getattr(model.injection, "kind", "none")
    backprop, why = backprop_layers(model)
    notes.append(why)
    layer_ids = sorted(k for k in set(r1["saved"]) | set(r2["saved"]) if isinstance(k, int))
    elt = _dtype_bytes(mcfg.frozen_dtype)
    return Profile(
        llm=llm, encoder=encoder, notes=notes, params=table, frozen_params=frozen, trainable_params=trainable,
        largest_layer_params=largest, n_layers=layout.n_layers, hidden=layout.hidden_size,
        vocab=layout.lm_head.weight.shape[0], seq_len=r1["seq_len"], prefix_len=r1["seq_len"] - text_len,
        text_len=text_len, n_targets=n_targets, frozen_bytes=elt,
        media_bytes=_numel(media_shape) * 4 if media_shape else 0, feature_bytes=feat,
        backprop_layers=backprop, injection=kind,
        saved_layer={i: _fit(r1["saved"].get(i, 0), r2["saved"].get(i, 0)) for i in layer_ids},
        saved_interface=_fit(r1["saved"].get("interface", 0), r2["saved"].get("interface", 0)),
        saved_head=_fit(r1["saved"].get("head", 0), r2["saved"].get("head", 0)),
        encoder_peak=_fit(r1["encoder_peak"], r2["encoder_peak"]),
        layer_input_bytes=r1["seq_len"] * layout.hidden_size * elt,
        flops_total=(r1["flops"], 0.0),
        flops_layer_fwd={i: (r1["layer_flops"].get(i, 0), 0.0) for i in range(layout.n_layers)},
    )


def backprop_layers(model) -> tuple[list[int], str]:
    """(decoder layers the gradient crosses, why): from the lowest layer where something trainable enters the
    sequence -- first-layer injection and input prompt tokens at layer 0, inner injection and gated
    cross-attention at the first injected layer -- or where the LLM itself trains (adapters, LoRA, bias tuning)."""
    n = model.layout.n_layers
    kind = getattr(model.injection, "kind", "none")
    plan = sorted(model.plan)
    if model.prompt is not None or model.deep_prompt is not None:
        return list(range(n)), "trainable prompt tokens enter at the LLM's input: the gradient crosses every layer"
    if any(p.requires_grad for p in model.llm.parameters()) or model.adapters is not None:
        return list(range(n)), "the LLM has trainable parameters (adapters/LoRA/bias tuning): every layer backpropagates"
    if kind == "first-layer":
        return list(range(n)), "first-layer injection: the gradient crosses every LLM layer"
    if kind in ("inner", "cross-attention") and plan:
        return list(range(plan[0], n)), (f"{kind} injection from layer {plan[0]}: the gradient crosses layers "
                                         f"{plan[0]}..{n - 1} only")
    return [], "nothing trainable inside the LLM's sequence"


def _numel(shape) -> int:
    n = 1
    for s in shape:
        n *= s
    return n


def _dtype_bytes(name: str) -> int:
    return {"fp32": 4, "fp16": 2, "bf16": 2}[name]


def _record(model, mode, batch: int, text_len: int, n_targets: int, media_shape, backward: bool = True) -> dict[str, Any]:
    """One fake training step (forward + backward) at ``batch``: saved bytes per region, FLOPs, encoder peak."""
    from torch.utils.flop_counter import FlopCounterMode

    from scaling.models import ops
    from scaling.plan.measure import DEVICE, PeakTracker, media_key

    region = ["interface"]
    hooks = []
    layer_index = {id(layer): i for i, layer in enumerate(model.layout.layers)}

    def enter(name):
        return lambda mod, args, kwargs=None: region.__setitem__(0, name)

    for layer in model.layout.layers:
        hooks.append(layer.register_forward_pre_hook(enter(layer_index[id(layer)])))
    param_storages = {p.untyped_storage()._cdata for p in list(model.parameters()) + list(model.buffers())}
    saved: dict[Any, dict[int, int]] = defaultdict(dict)

    def pack(t: torch.Tensor):
        st = t.untyped_storage()
        if st._cdata not in param_storages:
            saved[region[0]][st._cdata] = st.nbytes()
        return t

    layer_flops: dict[int, int] = {}
    try:
        with mode:
            ids = torch.zeros(batch, text_len, dtype=torch.long, device=DEVICE)
            media = None if media_shape is None else torch.zeros(batch, *media_shape, dtype=torch.float32, device=DEVICE)
            counter = FlopCounterMode(display=False) if backward else contextlib.nullcontext()
            tracker = PeakTracker()
            for t in list(model.parameters()) + list(model.buffers()):
                tracker.ignore(t)
            with counter, torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
                mapped = None
                if media is not None:
                    with tracker:
                        feats = model.extractor(media)
                    encoder_peak = tracker.peak
                    mapped = model.encode(features=feats)
                else:
                    encoder_peak = 0
                prefix, state = model._prefix(mapped, batch)
                embeds, mask, positions = model._inputs(ids, torch.ones_like(ids), prefix)
                if not state.hide_layers:
                    mask, positions = None, ops.arange_positions(mask)
                hidden = model._run(embeds, mask, positions, state)
                region[0] = "head"
                p = prefix.shape[1]
                h = hidden[:, p + text_len - n_targets - 1: p + text_len - 1].reshape(-1, hidden.shape[-1])
                head = model.layout.lm_head
                loss = ops.target_cross_entropy(h, head.weight, ids[:, -n_targets:].reshape(-1),
                                                model.label_smoothing, head.bias, "torch")
                if backward:
                    fwd = _flops_by_module(counter, model)
                    loss.backward()
            seq_len = embeds.shape[1]
            for name, n in (fwd.items() if backward else ()):
                m = re.search(r"\.layers\.(\d+)$", name) or re.search(r"\.h\.(\d+)$", name)
                if m:
                    layer_flops[int(m.group(1))] = n
            model.zero_grad(set_to_none=True)
    finally:
        for h in hooks:
            h.remove()
    return {"saved": {k: sum(v.values()) for k, v in saved.items()}, "flops": counter.get_total_flops() if backward else 0,
            "layer_flops": layer_flops, "encoder_peak": encoder_peak, "seq_len": seq_len, "media_key": media_key}


def _flops_by_module(counter, model) -> dict[str, int]:
    """Forward FLOPs so far per module name (FlopCounterMode's module hierarchy), for the decoder layers."""
    out = {}
    for name, per_op in counter.get_flop_counts().items():
        out[name] = sum(per_op.values())
    return out


def cache_path() -> str:
    root = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(root, "scaling", "plan_profiles.json")


def _code_hash() -> str:
    """scaling/models + scaling/config (param_cache.code_hash) and this package's source."""
    import hashlib

    from scaling.models.param_cache import code_hash

    h = hashlib.sha256(code_hash().encode())
    folder = os.path.dirname(os.path.abspath(__file__))
    for name in sorted(os.listdir(folder)):
        if name.endswith(".py"):
            with open(os.path.join(folder, name), "rb") as fh:
                h.update(name.encode() + fh.read())
    return h.hexdigest()[:16]


def _to_json(p: Profile) -> dict:
    d = dataclasses.asdict(p)
    for k in ("saved_layer", "flops_layer_fwd"):
        d[k] = {str(i): list(v) for i, v in d[k].items()}
    return d


def _from_json(d: dict) -> Profile:
    d = dict(d)
    for k in ("saved_layer", "flops_layer_fwd"):
        d[k] = {int(i): tuple(v) for i, v in d[k].items()}
    for k in ("saved_interface", "saved_head", "encoder_peak", "flops_total"):
        d[k] = tuple(d[k])
    return Profile(**d)


def profile_for(cfg, use_cache: bool | None = None) -> Profile:
    """:func:`build_profile`, cached in ``$XDG_CACHE_HOME/scaling/plan_profiles.json`` under a key of the model
    section, the text length, the backbones (param_cache's identity of a directory or a library's encoder), the
    torch/transformers versions and the source of scaling/models, scaling/config and scaling/plan (a change to any
    is another key). ``SCALING_NO_PLAN_CACHE=1`` (or ``use_cache=False``) profiles afresh."""
    import hashlib
    import json
    import tempfile

    import transformers

    from scaling.config.base import to_dict
    from scaling.models.param_cache import _backbone_id

    if use_cache is None:
        use_cache = os.environ.get("SCALING_NO_PLAN_CACHE", "") in ("", "0")
    if not use_cache:
        return build_profile(cfg)
    parts = {"model": to_dict(cfg.model), "text": cfg.data.max_text_len, "llm": _backbone_id(cfg.model.llm),
             "encoder": _backbone_id(cfg.model.encoder), "torch": torch.__version__,
             "transformers": transformers.__version__, "code": _code_hash()}
    key = hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()
    path = cache_path()
    entries: dict = {}
    if os.path.isfile(path):
        try:
            with open(path) as fh:
                entries = json.load(fh)
            if key in entries:
                return _from_json(entries[key])
        except (OSError, ValueError, TypeError, KeyError):
            entries = {}
    p = build_profile(cfg)
    entries[key] = _to_json(p)
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), suffix=".tmp")
        with os.fdopen(fd, "w") as fh:
            json.dump(dict(list(entries.items())[-200:]), fh)
        os.replace(tmp, path)
    except OSError:
        pass
    return p
