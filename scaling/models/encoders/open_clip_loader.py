"""``open_clip:ARCH@/checkpoint`` or ``open_clip:/folder`` (open_clip's hub layout: ``open_clip_config.json``
+ ``open_clip_model.safetensors`` / ``open_clip_pytorch_model.bin``): the **visual tower** only.

The architecture comes from open_clip (``open_clip.create_model(ARCH or "local-dir:FOLDER",
load_weights=False, pretrained_text=False)``: nothing downloaded), the weights from the local file:
the ``visual.*`` tensors of a full CLIP checkpoint (the text tower's are ignored), or a visual-only
state dict, loaded with an exact key match. Towers other than open_clip's ``VisionTransformer``
(ModifiedResNet, timm trunks) are refused: use ``timm:`` for timm trunks.

Levels come from the tower's ``forward_intermediates`` (block outputs, not normalised, the class
token first); the final norm is ``ln_post``. Preprocessing: the model's ``preprocess_cfg`` (size,
mean/std, interpolation, resize mode), as ``open_clip.create_model_and_transforms`` builds it.
"""

from __future__ import annotations

import functools
import logging
import os

import torch

from scaling.common.media import PIL_RESAMPLE, MediaSpec
from scaling.config.base import ConfigError
from scaling.models.encoders.base import DEPALM_AUTO, EncoderInfo, FinalNorm, PerceptualEncoder, per_frame_info
from scaling.models.encoders.checkpoint import find_weights
from scaling.models.encoders.common import closest, dims_namespace, parse_ref
from scaling.models.encoders.library import LibraryArch
from scaling.models.encoders.registry import EncoderLoader, register

log = logging.getLogger(__name__)
EXAMPLE = "model.encoder=open_clip:ViT-L-14@/models/laion-clip-L/open_clip_model.safetensors"


def _resolve(ref: str) -> tuple[str, str | None]:
    """(the name open_clip.create_model takes, weights path or None)."""
    import open_clip

    name, path = parse_ref(ref)
    if path and os.path.isdir(path):
        if not os.path.isfile(os.path.join(path, "open_clip_config.json")):
            raise ConfigError(f"model.encoder=open_clip:{ref}: {path} has no open_clip_config.json (open_clip's hub layout); "
                              f"or give the architecture: open_clip:ARCH@{path}/open_clip_model.safetensors")
        return f"local-dir:{path}", find_weights(path, f"model.encoder=open_clip:{ref}")
    if path and not os.path.exists(path):
        raise ConfigError(f"model.encoder=open_clip:{ref}: {path} does not exist; give a local checkpoint, e.g. {EXAMPLE}")
    if not name:
        raise ConfigError(f"model.encoder=open_clip:{ref}: name the architecture, e.g. {EXAMPLE}")
    if name not in open_clip.list_models():
        near = closest(name, open_clip.list_models())
        raise ConfigError(f"model.encoder=open_clip:{ref}: open_clip has no architecture {name!r}" +
                          (f"; closest names: {near}" if near else "") + " (open_clip.list_models() lists them)")
    return name, path


def _create(ref: str, device: str):
    import open_clip

    name, _ = _resolve(ref)
    with torch.device(device):
        model = open_clip.create_model(name, pretrained=None, load_weights=False, pretrained_text=False, device=device)
    visual = model.visual
    if not isinstance(visual, open_clip.transformer.VisionTransformer):
        raise ConfigError(f"model.encoder=open_clip:{ref}: the visual tower is a {type(visual).__name__}; scaling reads "
                          f"the patch tokens of open_clip's VisionTransformer (use timm:NAME@... for timm trunks)")
    visual.preprocess_cfg = dict(open_clip.get_model_preprocess_cfg(model))
    return visual


def _info(visual) -> EncoderInfo:
    grid = tuple(int(g) for g in visual.grid_size)
    return EncoderInfo("image", int(visual.transformer.width), len(visual.transformer.resblocks), True, 1, grid, (2, 2),
                       image_size=int(visual.image_size[0]), encoder_type="open_clip")


@functools.lru_cache(maxsize=8)
def _meta_visual(ref: str):
    return _create(ref, "meta")


class OpenClipEncoder(PerceptualEncoder):
    """open_clip's visual tower; levels from ``forward_intermediates`` (see the module docstring)."""

    def _hidden_states(self, media: torch.Tensor, levels: list[int], norm: torch.nn.Module | None = None) -> torch.Tensor:
        """media ``[B, 3, H, W]`` → ``[B, len(levels), 1 + n_patches, d]``."""
        n = self.info.n_layers
        idx = [lvl % n for lvl in levels]
        wanted = sorted(set(idx))
        out = self.model.forward_intermediates(media, indices=wanted, normalize_intermediates=False, intermediates_only=True,
                                               output_fmt="NLC", output_extra_tokens=True)
        by_index = {i: torch.cat([pre, tok], dim=1)
                    for i, tok, pre in zip(wanted, out["image_intermediates"], out["image_intermediates_prefix"])}
        states = torch.stack([by_index[i] for i in idx], dim=1)
        return norm(states) if norm is not None else states



def _weights(ref: str) -> str | None:
    return _resolve(ref)[1]


def _convert(ref: str, sd: dict[str, torch.Tensor], shape: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The ``visual.*`` tensors of a full CLIP checkpoint (a visual-only state dict as it is)."""
    if any(k.startswith("visual.") for k in sd):
        other = [k for k in sd if not k.startswith("visual.")]
        sd = {k[len("visual."):]: v for k, v in sd.items() if k.startswith("visual.")}
        log.info("open_clip:%s: visual tower only (%d tensors of the text tower/logit scale not used)", ref, len(other))
    return sd


ARCH = LibraryArch("open_clip", EXAMPLE, weights=_weights, meta_model=_meta_visual, create=_create, info=_info, convert=_convert)


def describe(ref: str, video_frames: int | None = None, **_options) -> EncoderInfo:
    return ARCH.describe(ref, video_frames)


def load(ref: str, dtype: str = "bf16", device="cpu", video_frames: int | None = None, meta: bool = False,
         **_options) -> OpenClipEncoder:
    name = _resolve(ref)[0]
    visual = ARCH.build(ref, dtype, device, meta)
    info = per_frame_info(_info(visual), video_frames)
    arch = name.split("local-dir:")[-1]
    config = dims_namespace(f"open_clip:{os.path.basename(os.path.normpath(arch))}", hidden_size=info.hidden_size,
                            num_hidden_layers=info.n_layers, image_size=info.image_size, patch_size=int(visual.patch_size[0]))
    return OpenClipEncoder(visual, info, config)


def media(ref: str, info: EncoderInfo, data_cfg=None):
    """open_clip's ``preprocess_cfg`` → MediaSpec (eval: resize shortest side + center crop, or squash)."""

    cfg = _meta_visual(ref).preprocess_cfg
    mode = cfg.get("resize_mode", "shortest")
    if mode not in ("shortest", "squash"):
        raise ConfigError(f"model.encoder=open_clip:{ref}: preprocess resize_mode {mode!r} (letterbox padding) is not "
                          f"supported; supported: shortest, squash")
    frames = info.num_frames or (data_cfg.video_frames if data_cfg is not None else 8)
    return MediaSpec(info.modality, image_size=int(info.image_size), mean=tuple(cfg["mean"]), std=tuple(cfg["std"]),
                     resize="shortest_edge" if mode == "shortest" else "square", resize_ratio=1.0,
                     resample=PIL_RESAMPLE.get(cfg.get("interpolation", "bicubic"), 3), frames=int(frames),
                     encoder_type="open_clip", preprocess=f"open_clip.preprocess_cfg(interpolation={cfg.get('interpolation')}, resize_mode={mode})")


TINY_OPEN_CLIP_CFG = {
    "embed_dim": 16,
    "vision_cfg": {"image_size": 32, "layers": 3, "width": 32, "patch_size": 8, "head_width": 8},
    "text_cfg": {"context_length": 8, "vocab_size": 64, "width": 16, "heads": 2, "layers": 1},
}


def save_tiny_open_clip(out_dir: str, seed: int = 0) -> str:
    """A tiny random CLIP (both towers) in open_clip's hub layout (``open_clip_config.json`` +
    ``open_clip_model.safetensors``): load its visual tower as ``open_clip:<out_dir>``."""
    import json

    import open_clip
    from safetensors.torch import save_file

    os.makedirs(out_dir, exist_ok=True)
    pre = {"mean": [0.48145466, 0.4578275, 0.40821073], "std": [0.26862954, 0.26130258, 0.27577711],
           "interpolation": "bicubic", "resize_mode": "shortest"}
    with open(os.path.join(out_dir, "open_clip_config.json"), "w") as fh:
        json.dump({"model_cfg": TINY_OPEN_CLIP_CFG, "preprocess_cfg": pre}, fh)
    torch.manual_seed(seed)
    model = open_clip.create_model(f"local-dir:{out_dir}", load_weights=False, pretrained_text=False)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, os.path.join(out_dir, "open_clip_model.safetensors"))
    return out_dir


FINAL_NORMS = {"open_clip": FinalNorm(("ln_post",), True, f"{DEPALM_AUTO}: ln_post (clip-vit-*-laion.yaml leave norm at auto)")}

register("open_clip", EncoderLoader(describe=describe, load=load, media=media, check=ARCH.check, identity=ARCH.identity,
                                    example=EXAMPLE, final_norms=FINAL_NORMS, tiny=save_tiny_open_clip,
                                    names={"open_clip ViTs": "image"},
                                    distribution="open_clip_torch"))
