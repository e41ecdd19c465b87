"""``timm:NAME@/weights.safetensors`` or ``timm:/folder`` (timm's hub layout: ``config.json`` + weights).

The architecture comes from timm (``timm.create_model(NAME, pretrained=False)``, or the folder's
``config.json`` read with timm's ``load_model_config_from_path``: architecture, ``pretrained_cfg``,
``model_args``); the weights from the local file, passed through the architecture's own
``checkpoint_filter_fn`` as timm does for pretrained weights, then loaded with an exact key match.
The classifier head is not built (``num_classes=0``); its keys in the checkpoint are ignored.

Levels come from ``forward_intermediates`` (block outputs, ``norm=False``, prefix tokens returned and
put first); the final norm is the model's ``norm``. Preprocessing: ``timm.data.resolve_data_config``
(input size, mean/std, interpolation, ``crop_pct``/``crop_mode``).
"""

from __future__ import annotations

import functools
import logging
import os
import sys

import torch

from scaling.common.media import PIL_RESAMPLE, MediaSpec
from scaling.config.base import ConfigError
from scaling.models.encoders.base import DEPALM_AUTO, EncoderInfo, FinalNorm, PerceptualEncoder, per_frame_info
from scaling.models.encoders.checkpoint import find_weights
from scaling.models.encoders.common import closest, dims_namespace, parse_ref
from scaling.models.encoders.library import LibraryArch
from scaling.models.encoders.registry import EncoderLoader, register

log = logging.getLogger(__name__)
EXAMPLE = "model.encoder=timm:eva02_large_patch14_clip_224.merged2b@/models/eva02-L.safetensors"


def _resolve(ref: str) -> tuple[str, dict | None, dict, str | None]:
    """(model name, pretrained_cfg or None, model_args, weights path or None)."""
    import timm
    from timm.models import split_model_name_tag
    from timm.models._hub import load_model_config_from_path  # what create_model("local-dir:...") uses

    name, path = parse_ref(ref)
    pretrained_cfg, model_args = None, {}
    if path and os.path.isdir(path):
        if not os.path.isfile(os.path.join(path, "config.json")):
            raise ConfigError(f"model.encoder=timm:{ref}: {path} has no config.json (timm's hub layout: config.json + "
                              f"model.safetensors); or give the architecture: timm:NAME@{path}/model.safetensors")
        pretrained_cfg, arch, model_args = load_model_config_from_path(path)
        if name and split_model_name_tag(name)[0] != arch:
            raise ConfigError(f"model.encoder=timm:{ref}: the folder holds {arch!r}, not {name!r}")
        name = arch
        path = find_weights(path, f"model.encoder=timm:{ref}")
    elif path and not os.path.exists(path):
        raise ConfigError(f"model.encoder=timm:{ref}: {path} does not exist; give a local weights file or a folder "
                          f"in timm's hub layout, e.g. {EXAMPLE}")
    if not name:
        raise ConfigError(f"model.encoder=timm:{ref}: name the architecture, e.g. {EXAMPLE}")
    arch = split_model_name_tag(name)[0]
    if not timm.is_model(arch):
        near = closest(arch, timm.list_models())
        raise ConfigError(f"model.encoder=timm:{ref}: timm has no model {arch!r}" +
                          (f"; closest names: {near}" if near else "") + " (timm.list_models() lists them)")
    return name, pretrained_cfg, dict(model_args), path


def _create(ref: str, device) -> torch.nn.Module:
    import timm

    name, pretrained_cfg, model_args, _ = _resolve(ref)
    model_args.update(num_classes=0)
    with torch.device(device):
        model = timm.create_model(name, pretrained=False, pretrained_cfg=pretrained_cfg, **model_args)
    if not hasattr(model, "forward_intermediates") or not hasattr(getattr(model, "patch_embed", None), "grid_size"):
        raise ConfigError(f"model.encoder=timm:{ref}: {type(model).__name__} is not a patch-token transformer with "
                          f"forward_intermediates (ViT, EVA, DeiT, ...); scaling extracts patch tokens per level")
    return model


def encoder_type(arch: str) -> str:
    """The FINAL_NORMS key: EVA-CLIP models (official default: no final norm) apart from other timm models."""
    return "timm-eva-clip" if arch.startswith("eva02") and "_clip_" in arch else "timm"


def _info(model) -> EncoderInfo:
    has_cls = getattr(model, "cls_token", None) is not None
    img = model.patch_embed.img_size
    return EncoderInfo("image", int(model.embed_dim), len(model.blocks), has_cls, int(model.num_prefix_tokens),
                       tuple(int(g) for g in model.patch_embed.grid_size), (2, 2), image_size=int(img[0]),
                       encoder_type=encoder_type(model.pretrained_cfg.get("architecture") or ""))


@functools.lru_cache(maxsize=8)
def _meta_model(ref: str):
    return _create(ref, "meta")


class TimmEncoder(PerceptualEncoder):
    """A timm ViT-like model; levels from ``forward_intermediates`` (see the module docstring)."""

    def _hidden_states(self, media: torch.Tensor, levels: list[int], norm: torch.nn.Module | None = None) -> torch.Tensor:
        """media ``[B, 3, H, W]`` → ``[B, len(levels), n_prefix + n_patches, d]``."""
        n = self.info.n_layers
        idx = [lvl % n for lvl in levels]
        wanted = sorted(set(idx))
        outs = self.model.forward_intermediates(media, indices=wanted, return_prefix_tokens=True, norm=False,
                                                output_fmt="NLC", intermediates_only=True)
        by_index = {}
        for i, out in zip(wanted, outs):
            patches, prefix = out if isinstance(out, tuple) else (out, None)
            by_index[i] = torch.cat([prefix, patches], dim=1) if prefix is not None and prefix.shape[1] else patches
        states = torch.stack([by_index[i] for i in idx], dim=1)
        return norm(states) if norm is not None else states



def _weights(ref: str) -> str | None:
    return _resolve(ref)[3]


def _convert(ref: str, sd: dict[str, torch.Tensor], shape: torch.nn.Module) -> dict[str, torch.Tensor]:
    """timm's own conversion of this architecture's checkpoints; the classifier head's keys dropped."""
    filter_fn = getattr(sys.modules[type(shape).__module__], "checkpoint_filter_fn", None)
    if filter_fn is not None:
        sd = filter_fn(sd, shape)
    head = shape.pretrained_cfg.get("classifier") or "head"
    heads = (head,) if isinstance(head, str) else tuple(head)
    own = shape.state_dict()
    dropped = [k for k in sd if k.split(".")[0] in {h.split(".")[0] for h in heads} and k not in own]
    for k in dropped:
        del sd[k]
    if dropped:
        log.info("timm:%s: the classifier head (%d tensors) is not used", _resolve(ref)[0], len(dropped))
    return sd


ARCH = LibraryArch("timm", EXAMPLE, weights=_weights, meta_model=_meta_model, create=_create, info=_info, convert=_convert)


def describe(ref: str, video_frames: int | None = None, **_options) -> EncoderInfo:
    return ARCH.describe(ref, video_frames)


def load(ref: str, dtype: str = "bf16", device="cpu", video_frames: int | None = None, meta: bool = False,
         **_options) -> TimmEncoder:
    name = _resolve(ref)[0]
    model = ARCH.build(ref, dtype, device, meta)
    info = per_frame_info(_info(model), video_frames)
    config = dims_namespace(f"timm:{name.split('.')[0]}", hidden_size=info.hidden_size, num_hidden_layers=info.n_layers,
                            image_size=info.image_size, patch_size=int(model.patch_embed.patch_size[0]))
    return TimmEncoder(model, info, config)


def media(ref: str, info: EncoderInfo, data_cfg=None):
    """timm's ``resolve_data_config`` of the model → MediaSpec (eval: resize to size/crop_pct, center crop)."""
    import math

    from timm.data import resolve_data_config


    cfg = resolve_data_config({}, model=_meta_model(ref))
    size = int(info.image_size)
    crop_pct = float(cfg.get("crop_pct") or 1.0)
    mode = cfg.get("crop_mode", "center")
    scale = math.floor(size / crop_pct)
    frames = info.num_frames or (data_cfg.video_frames if data_cfg is not None else 8)
    return MediaSpec(info.modality, image_size=size, mean=tuple(cfg["mean"]), std=tuple(cfg["std"]),
                     resize="square" if mode == "squash" and scale == size else "shortest_edge", resize_ratio=scale / size,
                     resample=PIL_RESAMPLE.get(cfg.get("interpolation", "bicubic"), 3), frames=int(frames),
                     encoder_type=f"timm:{_meta_model(ref).pretrained_cfg.get('architecture')}",
                     preprocess=f"timm.resolve_data_config(interpolation={cfg.get('interpolation')}, crop_pct={crop_pct}, crop_mode={mode})")


TINY_TIMM_ARGS = dict(img_size=32, patch_size=8, embed_dim=32, depth=3, num_heads=4)


def save_tiny_timm(out_dir: str, name: str = "eva02_large_patch14_clip_224.merged2b", seed: int = 0, **overrides) -> str:
    """A tiny random timm model of architecture ``name`` in timm's hub layout (``config.json`` +
    ``model.safetensors``, written by timm's ``save_for_hf``): load it as ``timm:<out_dir>``."""
    import timm
    from timm.models import save_for_hf

    args = {**TINY_TIMM_ARGS, **overrides}
    torch.manual_seed(seed)
    model = timm.create_model(name, pretrained=False, **args)
    os.makedirs(out_dir, exist_ok=True)
    save_for_hf(model, out_dir, model_args=args, safe_serialization=True)
    return out_dir


FINAL_NORMS = {
    "timm": FinalNorm(("norm",), True, f"{DEPALM_AUTO}: timm's norm (vit-*.yaml leave norm at auto)"),
    "timm-eva-clip": FinalNorm(("norm",), False, "DePALM config/feat_model/eva-clip-L.yaml: norm: null"),
}

register("timm", EncoderLoader(describe=describe, load=load, media=media, check=ARCH.check, identity=ARCH.identity,
                               example=EXAMPLE, final_norms=FINAL_NORMS, tiny=save_tiny_timm,
                               names={"timm ViTs": "image"}, distribution="timm"))
