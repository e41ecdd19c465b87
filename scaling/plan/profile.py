"""The facts the planner needs about a config's model, counted at its real shapes without allocating.

The model is built on the ``meta`` device (parameter counts per component, as ``scaling methods``), then
moved to a fake device (:mod:`scaling.plan.measure`) where one training step at micro-batch 2 records:

- the bytes autograd keeps for the backward pass (``torch.autograd.graph.saved_tensors_hooks``), per region:
  the mapper / injection / prompt (``interface``), each LLM decoder layer, the loss head; parameters are not
  counted (they are model state); a saved tensor whose leading dimension stays 1 (rotary tables, causal masks) is
  counted once, every other one per sample;
- the FLOPs of the step, forward per region and in total, with the formulas of ``torch.utils.flop_counter``
  (:class:`~scaling.plan.measure.RegionFlops`; the tests check the total against ``FlopCounterMode``);
- the encoder's forward working set (:class:`~scaling.plan.measure.PeakTracker` around the frozen encoder).

Placeholder backbones of the shipped configs (``/path/to/llama-7b``, ``/path/to/clip-vit-large-patch14``,
``timm:NAME@/path/to/weights``, ``mavil:/path/to/mavil.pth``) are planned with the shape they name
(:data:`PLACEHOLDER_SHAPES`); the profile says so.
"""

from __future__ import annotations

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
    flops_layer_fwd: dict[int, tuple[float, float]]  # forward of each decoder layer
    # what checkpointing recomputes of each layer: its forward up to the last activation it saves (non-reentrant
    # checkpointing stops there; e.g. a frozen LLaMA layer's down_proj is not recomputed)
    flops_layer_recompute: dict[int, tuple[float, float]]

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


FINAL_NORMS = ("norm", "final_layer_norm", "ln_f", "final_layernorm", "norm_f")  # names of the decoder's last norm
PROFILE_BATCH = 2  # the fake step's micro-batch (> 1, so that batch-independent saved tensors can be told apart)


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
    if model.mapper is not None and hasattr(model.mapper, "f"):  # R-rand: a random keep fraction per batch, whose
        # draw reads a random number (fake tensors hold none): planned as its evaluation mode without eval_full,
        # which keeps f_max of the patch tokens -- the largest training batch (drawn with probability >= p_max)
        model.mapper.eval()
        model.mapper.eval_full = False
        notes.append(f"R-rand keeps a random fraction (at most f_max = {model.mapper.f['f_max']:g}) of the patch tokens "
                     "per training batch: planned with f_max, its largest batches")
    rec = _record(model, mode, PROFILE_BATCH, text_len, n_targets, media_shape)
    kind = getattr(model.injection, "kind", "none")
    backprop, why = backprop_layers(model)
    notes.append(why)
    layer_ids = sorted(k for k in rec["saved"] if isinstance(k, int))
    elt = _dtype_bytes(mcfg.frozen_dtype)
    return Profile(
        llm=llm, encoder=encoder, notes=notes, params=table, frozen_params=frozen, trainable_params=trainable,
        largest_layer_params=largest, n_layers=layout.n_layers, hidden=layout.hidden_size,
        vocab=layout.lm_head.weight.shape[0], seq_len=rec["seq_len"], prefix_len=rec["seq_len"] - text_len,
        text_len=text_len, n_targets=n_targets, frozen_bytes=elt,
        media_bytes=_numel(media_shape) * 4 if media_shape else 0, feature_bytes=feat,
        backprop_layers=backprop, injection=kind,
        saved_layer={i: rec["saved"][i] for i in layer_ids},
        saved_interface=rec["saved"].get("interface", (0.0, 0.0)),
        saved_head=rec["saved"].get("head", (0.0, 0.0)),
        encoder_peak=(rec["encoder_peak"] / PROFILE_BATCH, 0.0),
        layer_input_bytes=rec["seq_len"] * layout.hidden_size * elt,
        flops_total=(rec["flops"] / PROFILE_BATCH, 0.0),
        flops_layer_fwd={i: (rec["layer_flops"].get(i, 0) / PROFILE_BATCH, 0.0) for i in range(layout.n_layers)},
        flops_layer_recompute={i: (rec["recompute_flops"].get(i, 0) / PROFILE_BATCH, 0.0) for i in range(layout.n_layers)},
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


def _record(model, mode, batch: int, text_len: int, n_targets: int, media_shape) -> dict[str, Any]:
    """One fake training step (forward + backward) at ``batch``: bytes saved for backward per region as (per
    sample, batch-independent) -- a saved tensor whose leading dimension is 1 at ``batch`` > 1 (rotary tables,
    causal masks) does not grow with the batch --, FLOPs (forward per region, and in total) and the encoder's peak."""
    from scaling.models import ops
    from scaling.plan.measure import DEVICE, PeakTracker, RegionFlops

    region: list[Any] = ["interface"]
    hooks = []

    def enter(name):
        return lambda mod, args: region.__setitem__(0, name)

    for i, layer in enumerate(model.layout.layers):
        hooks.append(layer.register_forward_pre_hook(enter(i)))
    for name, module in model.layout.base.named_modules():  # the final norm runs after the last layer: the head's
        if name.split(".")[-1] in FINAL_NORMS and name.count(".") <= 1:
            hooks.append(module.register_forward_pre_hook(enter("head")))
    param_storages = {p.untyped_storage()._cdata for p in list(model.parameters()) + list(model.buffers())}
    saved: dict[Any, dict[int, tuple[int, bool]]] = defaultdict(dict)
    phase = ["forward"]
    counter = RegionFlops(lambda: (phase[0], region[0]))

    last_save: dict[Any, int] = {}

    def pack(t: torch.Tensor):
        st = t.untyped_storage()
        if st._cdata not in param_storages and phase[0] == "forward":
            saved[region[0]][st._cdata] = (st.nbytes(), t.dim() > 0 and t.shape[0] == 1)
            # checkpointing recomputes a layer only up to its last saved activation (early stop)
            last_save[region[0]] = counter.counts.get(("forward", region[0]), 0)
        return t

    try:
        with mode:
            ids = torch.zeros(batch, text_len, dtype=torch.long, device=DEVICE)
            media = None if media_shape is None else torch.zeros(batch, *media_shape, dtype=torch.float32, device=DEVICE)
            tracker = PeakTracker()
            for t in list(model.parameters()) + list(model.buffers()):
                tracker.ignore(t)
            with counter, torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
                mapped = None
                encoder_peak = 0
                if media is not None:
                    region[0] = "encoder"
                    with tracker:
                        feats = model.extractor(media)
                    encoder_peak = tracker.peak
                    region[0] = "interface"
                    mapped = model.encode(features=feats)
                prefix, state = model.prefix(mapped, batch)
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
                phase[0] = "backward"
                loss.backward()
            seq_len = embeds.shape[1]
            model.zero_grad(set_to_none=True)
    finally:
        for h in hooks:
            h.remove()
    per_region = {}
    for key, entries in saved.items():
        shared = sum(n for n, fixed in entries.values() if fixed)
        grows = sum(n for n, fixed in entries.values() if not fixed)
        per_region[key] = (grows / batch, float(shared))
    layer_flops = {r: n for (ph, r), n in counter.counts.items() if ph == "forward" and isinstance(r, int)}
    recompute = {r: n for r, n in last_save.items() if isinstance(r, int)}
    return {"saved": per_region, "flops": counter.total(), "layer_flops": layer_flops, "encoder_peak": encoder_peak,
            "seq_len": seq_len, "recompute_flops": recompute}


def cache_path() -> str:
    root = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(root, "scaling", "plan_profiles.json")


def _code_hash() -> str:
    """scaling/models + scaling/config (param_cache.code_hash) and the source that counts (profile.py, measure.py)."""
    import hashlib

    from scaling.models.param_cache import code_hash

    h = hashlib.sha256(code_hash().encode())
    folder = os.path.dirname(os.path.abspath(__file__))
    for name in ("profile.py", "measure.py"):
        with open(os.path.join(folder, name), "rb") as fh:
            h.update(name.encode() + fh.read())
    return h.hexdigest()[:16]


def _to_json(p: Profile) -> dict:
    d = dataclasses.asdict(p)
    for k in ("saved_layer", "flops_layer_fwd", "flops_layer_recompute"):
        d[k] = {str(i): list(v) for i, v in d[k].items()}
    return d


def _from_json(d: dict) -> Profile:
    d = dict(d)
    for k in ("saved_layer", "flops_layer_fwd", "flops_layer_recompute"):
        d[k] = {int(i): tuple(v) for i, v in d[k].items()}
    for k in ("saved_interface", "saved_head", "encoder_peak", "flops_total"):
        d[k] = tuple(d[k])
    return Profile(**d)


def profile_for(cfg, use_cache: bool | None = None) -> Profile:
    """:func:`build_profile`, cached in ``$XDG_CACHE_HOME/scaling/plan_profiles.json`` under a key of the model
    section, the text length, the backbones (param_cache's identity of a directory or a library's encoder), the
    torch/transformers versions and the source of scaling/models, scaling/config and the counting code of
    scaling/plan (a change to any is another key). ``SCALING_NO_PLAN_CACHE=1`` (or ``use_cache=False``) profiles afresh."""
    import hashlib
    import json

    import transformers

    from scaling.common.io import write_json
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
        write_json(path, dict(list(entries.items())[-200:]))
    except OSError:
        pass
    return p
