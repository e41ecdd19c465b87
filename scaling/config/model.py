"""The ``model`` config section: backbones, precision, and the four blocks (or a method preset)."""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Mapping
from typing import Any, Literal

from scaling.config.base import ConfigError, deep_merge, suggest


@dataclasses.dataclass
class ExtractConfig:
    n_levels: int = 1  # the last n_fl encoder layers
    tokens: Literal["all", "cls"] = "all"
    layers: list[int] | None = None  # explicit layer indices (overrides n_levels)
    # every level through the encoder's own final norm (scaling/models/final_norm.py): auto = the official
    # per-encoder default (DePALM extractors.py norm: auto; null for EVA-CLIP/MAViL), final = always, none = raw
    norm: Literal["auto", "final", "none"] = "auto"


@dataclasses.dataclass
class FinetuneConfig:
    n_prompt: int = 0  # prompt tuning: learned tokens after the perceptual ones
    prompt_mlp: bool = False  # produce the prompt through an MLP (eP-ALM)
    prompt_mlp_hidden: int | None = None  # default: d_LLM (eP-ALM's models/epalm.py: mid_dim = prompt_dim)
    deep_prompt: int = 0  # learned tokens replaced in every LLM block
    bias_tuning: Literal["none", "llm", "encoder", "both"] = "none"
    adapters: bool = False  # sequential bottleneck adapters after attention and FFN
    adapter_reduction: int = 8
    lora_rank: int = 0  # LoRA through peft when > 0
    lora_alpha: float = 16.0
    lora_dropout: float = 0.0
    lora_targets: list[str] | None = None  # default: the attention's q/v projections


@dataclasses.dataclass
class ModelConfig:
    llm: str = "tiny-llama"  # local HF directory, hub id (needs network) or shape name
    encoder: str = "tiny-vit"
    method: str | None = None  # a preset of `scaling methods`; explicit fields override it
    extract: ExtractConfig = dataclasses.field(default_factory=ExtractConfig)
    map: dict[str, Any] = dataclasses.field(default_factory=lambda: {"name": "qpmapper"})
    inject: dict[str, Any] = dataclasses.field(default_factory=lambda: {"name": "first-layer"})
    finetune: FinetuneConfig = dataclasses.field(default_factory=FinetuneConfig)
    frozen_dtype: Literal["fp32", "fp16", "bf16"] = "bf16"  # V100 has no bf16: use fp16 there
    attn_implementation: Literal["sdpa", "eager"] = "sdpa"
    kernels: Literal["auto", "triton", "torch"] = "auto"
    # fused training forward of the frozen LLaMA/Qwen2/Mistral layers (scaling/models/fast_llm.py):
    # auto = on CUDA; on = everywhere (CPU runs the kernels' PyTorch references); off = the HF layers
    fused_llm: Literal["auto", "on", "off"] = "auto"
    # quantise the fused layers' frozen projection weights to row-wise FP8 (scaling/models/fp8.py):
    # FP8 GEMMs forward and backward; on CUDA needs compute capability >= 8.9 (H100/L40) and frozen_dtype bf16
    fp8_llm: bool = False
    # torch.compile the frozen encoder's forward (inference only: fuses its LayerNorms, activations and
    # bias adds); compiled on the first batch of each new shape; not under ZeRO-3
    compile_encoder: bool = False
    # LLMs with learned absolute positions (OPT, GPT-2; scaling/models/positions.py): prompt = the prompt and the
    # text are numbered from 0, no perceptual token (first-layer or inner) gets a position (DePALM's code, which
    # inserts them inside the layers); input = every token at the LLM's input (first-layer tokens, prompt) is numbered,
    # inner-injected ones get none (scaling's default before); text = no prefix token gets one, the text starts at 0
    # (eP-ALM's opt.py; the eP-ALM presets); sequence = every token. Rotary LLMs: every token, whatever the setting.
    learned_positions: Literal["prompt", "input", "text", "sequence"] = "prompt"
    # epsilon of the map and inject blocks' RMSNorms and LayerNorms (scaling/config/blocks.py NORM_EPS): official =
    # 1e-4 (DePALM's get_norm_layer); format-1 = RMSNorm 1e-6, LayerNorm 1e-5 (scaling's before issue 14: what an
    # adapter of config format 1 was trained with; its stored config gets it on loading)
    norm_eps: str = "official"
    video_frames: int | None = None  # apply an image encoder per frame ("ViT avg") on videos of this many frames
    # family-specific encoder settings (scaling/models/encoders/<family>.py), e.g. {clap_levels: blocks} for a full
    # CLAP checkpoint (default projected: DePALM's 1025 projected tokens; blocks: HTSAT's last-stage blocks)
    encoder_options: dict[str, Any] = dataclasses.field(default_factory=dict)
    label_smoothing: float = 0.002
    trust_remote_code: bool = False
    about: str | None = None  # the preset's one-line description (informational)

    def __post_init__(self):
        from scaling.config.blocks import NORM_EPS, check_injection_args, check_mapper_args

        problems = []
        m = dict(self.map)
        name = m.pop("name", None)
        if name is None:
            problems.append("model.map needs a 'name' (e.g. qpmapper, linear, resampler)")
        elif name != "none":
            problems += [f"model.map: {p}" for p in check_mapper_args(name, m)]
        i = dict(self.inject)
        iname = i.pop("name", None)
        if iname is None:
            problems.append("model.inject needs a 'name' (first-layer, inner, cross-attention, none)")
        else:
            problems += [f"model.inject: {p}" for p in check_injection_args(iname, i)]
        if iname == "cross-attention" and name != "xattn-resampler":
            problems.append("model.inject 'cross-attention' needs model.map.name 'xattn-resampler' (its perceptual side)")
        if name == "xattn-resampler" and iname != "cross-attention":
            problems.append("model.map 'xattn-resampler' only works with model.inject.name 'cross-attention'")
        if (name == "none") != (iname == "none"):
            problems.append("model.map.name 'none' and model.inject.name 'none' go together (the blind baseline)")
        if self.norm_eps not in NORM_EPS:
            problems.append(f"model.norm_eps must be one of {sorted(NORM_EPS)} (the map/inject blocks' norm epsilon), "
                            f"got {self.norm_eps!r}{suggest(str(self.norm_eps), NORM_EPS)}")
        if self.extract.n_levels < 1:
            problems.append("model.extract.n_levels must be >= 1")
        if not isinstance(self.label_smoothing, (int, float)) or not 0 <= self.label_smoothing < 1:
            problems.append(f"model.label_smoothing must be in [0, 1) (the share of probability spread over the "
                            f"vocabulary; official 0.002), got {self.label_smoothing}")
        if self.fp8_llm and self.fused_llm == "off":
            problems.append("model.fp8_llm quantises the fused frozen-LLM layers: set model.fused_llm to auto or on")
        if problems:
            raise ConfigError(problems)


# the method-specific blocks of a preset (the framework's extract → map → inject → fine-tune)
METHOD_BLOCKS = ("extract", "map", "inject", "finetune")


def resolve_model_section(data: Mapping[str, Any]) -> dict[str, Any]:
    """Expand ``method`` into its preset; explicit fields win. A ``map``/``inject`` with a different
    ``name`` than the preset's replaces the preset's section instead of merging into it."""
    from scaling.config.methods import METHODS

    data = {k: v for k, v in data.items() if not (k in METHOD_BLOCKS and v is None)}  # null: the preset's own
    method = data.get("method")
    if not method:
        return data
    if method not in METHODS:
        raise ConfigError(f"unknown method {method!r}{suggest(method, METHODS)}; valid: {sorted(METHODS)} (see `scaling methods`)")
    base = copy.deepcopy(METHODS[method])
    for section in ("map", "inject"):
        user = data.get(section)
        if isinstance(user, Mapping) and user.get("name") not in (None, base[section]["name"]):
            base[section] = {}
    return deep_merge(base, data)


def model_config(data: Mapping[str, Any] | None = None, **overrides: Any) -> ModelConfig:
    """Build a :class:`ModelConfig` from a dict (with ``method`` resolution) plus keyword overrides."""
    from scaling.config.base import from_dict

    merged = resolve_model_section(deep_merge(dict(data or {}), overrides))
    return from_dict(ModelConfig, merged)
