"""Builders: a :class:`~scaling.config.model.ModelConfig` → a :class:`PerceptualLM`.

This is the only place that reads the config; the blocks take flat arguments. It also owns
freezing: :func:`freeze_and_mark` sets what trains and reports a table of frozen/trainable
parameter counts per component.
"""

from __future__ import annotations

import logging
from collections import OrderedDict

import torch
from torch import nn

from scaling.config.base import ConfigError
from scaling.config.model import ModelConfig
from scaling.models.backbones import describe_encoder, llm_layout, load_config_only, load_encoder, load_llm
from scaling.models.extract import FeatureExtractor
from scaling.models.finetune import (
    UNUSED_ENCODER_HEADS,
    DeepPrompt,
    PromptTuning,
    apply_lora,
    attach_adapters,
    enable_bias_tuning,
)
from scaling.models.injection import build_injection
from scaling.models.layers import set_norm_eps
from scaling.models.mapping import build_mapper
from scaling.models.model import PerceptualLM

log = logging.getLogger(__name__)


def build_model(cfg: ModelConfig, device: str | torch.device = "cpu", meta: bool = False, fuse: bool = True) -> PerceptualLM:
    """Load (or, for shape names / ``meta``, construct) the backbones and build the method's blocks.

    Trainable blocks are fp32; the frozen backbones are in ``cfg.frozen_dtype``. With ``meta=True``
    nothing is allocated (parameter counting at real scale). ``fuse=False`` never installs the fused
    LLM forward (the trainer passes it under ZeRO-3, which partitions the frozen weights itself).
    """
    ctx = torch.device("meta") if meta else torch.device(device)
    llm = load_llm(cfg.llm, cfg.frozen_dtype, device, cfg.attn_implementation, cfg.trust_remote_code, meta=meta)
    layout = llm_layout(llm)
    map_args = dict(cfg.map)
    map_name = map_args.pop("name")
    inject_args = dict(cfg.inject)
    inject_name = inject_args.pop("name")

    extractor = mapper = None
    if inject_name != "none":
        encoder = load_encoder(
            cfg.encoder, cfg.frozen_dtype, device, cfg.video_frames, cfg.trust_remote_code, meta=meta,
            attn_implementation=cfg.attn_implementation, **cfg.encoder_options,
        )
        extractor = FeatureExtractor(encoder, cfg.extract.n_levels, cfg.extract.tokens, cfg.extract.layers,
                                     cfg.extract.norm)
        info = encoder.info
        if map_name == "resampler" and cfg.extract.tokens == "cls":
            raise ConfigError("the block resampler pools patch tokens: set model.extract.tokens=all")
        with ctx:
            mapper = build_mapper(
                map_name, map_args, d_in=info.hidden_size, d_out=layout.hidden_size, n_levels=extractor.n_levels,
                grid=info.grid if cfg.extract.tokens == "all" else (1,), block=info.block if cfg.extract.tokens == "all" else (1,),
                has_cls=info.has_cls or cfg.extract.tokens == "cls",
            )
        if inject_name == "first-layer" and extractor.n_levels > 1:
            log.info("first-layer injection of %d levels: their tokens are concatenated", extractor.n_levels)
    with ctx:
        injection = build_injection(inject_name, inject_args, d_llm=layout.hidden_size, d_embed=getattr(mapper, "d_embed", None))
        for block in (mapper, injection):  # the blocks' norms take model.norm_eps
            if block is not None:
                set_norm_eps(block, cfg.norm_eps)
        ft = cfg.finetune
        d = layout.hidden_size
        prompt = None
        if ft.n_prompt > 0:
            hidden = (ft.prompt_mlp_hidden or d) if ft.prompt_mlp else 0
            prompt = PromptTuning(ft.n_prompt, d, hidden)
        deep = DeepPrompt(layout.n_layers, ft.deep_prompt, d) if ft.deep_prompt > 0 else None
    adapters = None
    if ft.adapters:
        with ctx:
            adapters, _ = attach_adapters(layout.layers, layout.attn_attr, layout.ffn_attr, d, ft.adapter_reduction)
    if ft.bias_tuning in ("llm", "both"):
        enable_bias_tuning(llm)
    if ft.bias_tuning in ("encoder", "both"):
        if extractor is None:
            raise ConfigError("finetune.bias_tuning on the encoder needs a method with perception")
        enable_bias_tuning(extractor.encoder.model, exclude=UNUSED_ENCODER_HEADS)
    if ft.lora_rank > 0:
        targets = ft.lora_targets or list(layout.lora_targets)
        if not targets:
            raise ConfigError("finetune.lora_targets: no default attention projections found in this LLM; name them")
        apply_lora(llm, ft.lora_rank, ft.lora_alpha, ft.lora_dropout, targets)
    model = PerceptualLM(
        llm, layout, extractor, mapper, injection, prompt, deep, adapters,
        label_smoothing=cfg.label_smoothing, kernel_mode=cfg.kernels, learned_positions=cfg.learned_positions,
    )
    if inject_name in ("inner", "cross-attention") and cfg.attn_implementation not in ("sdpa", "eager"):
        raise ConfigError("inner/cross-attention injection needs model.attn_implementation sdpa or eager")
    freeze_and_mark(model)
    if fuse and not meta:
        fuse_llm(model, cfg, torch.device(device))
    if cfg.compile_encoder and not meta and extractor is not None:
        if not model.compile_encoder():
            log.info("model.compile_encoder: the encoder has trainable parameters (bias tuning): left uncompiled")
    return model


def fuse_llm(model: PerceptualLM, cfg: ModelConfig, device: torch.device) -> dict | None:
    """Install the fused training forward on the frozen LLM's eligible layers (``cfg.fused_llm``).

    Runs after LoRA, bias tuning and adapters exist: layers they touch are left to Hugging Face.
    With ``cfg.fp8_llm`` the fused layers' weights are also quantised to FP8 (also on CPU, where
    ``fused_llm=auto`` otherwise leaves the layers alone). Returns the report of :func:`scaling.models.fast_llm.accelerate_llm`, or None when off."""
    if cfg.fused_llm == "off" or (cfg.fused_llm == "auto" and device.type != "cuda" and not cfg.fp8_llm):
        return None
    from scaling.models.fast_llm import accelerate_llm

    report = accelerate_llm(model.llm, mode=cfg.kernels, fp8=cfg.fp8_llm)
    if report.get("fused_layers"):
        log.info("fused LLM forward on %d layer(s)%s", report["fused_layers"],
                 f"; left to Hugging Face: {report['skipped']}" if report.get("skipped") else "")
    elif cfg.fused_llm == "on":
        log.info("model.fused_llm=on but no layer qualifies: %s", report.get("reason") or report.get("skipped"))
    if cfg.fp8_llm:
        if not report.get("fp8_layers"):
            why = report.get("reason") or report.get("fp8_skipped") or report.get("skipped")
            raise ConfigError(f"model.fp8_llm: no layer of the LLM could run in FP8 ({why}); set model.fp8_llm=false")
        log.info("FP8 weights on %d layer(s)%s", report["fp8_layers"],
                 f"; kept in {cfg.frozen_dtype}: {report['fp8_skipped']}" if report.get("fp8_skipped") else "")
    return report


def freeze_and_mark(model: PerceptualLM) -> OrderedDict[str, tuple[int, int]]:
    """Freeze the backbones, keep the interface trainable (fp32); returns {component: (trainable, frozen)}.

    Backbone parameters already marked trainable by bias tuning or LoRA stay trainable.
    """
    for _name, module in (("mapper", model.mapper), ("injection", model.injection), ("prompt", model.prompt),
                         ("deep_prompt", model.deep_prompt), ("adapters", model.adapters)):
        if module is not None:
            module.float() if not _is_meta(module) else None
            module.requires_grad_(True)
    return parameter_table(model)


def _is_meta(module: nn.Module) -> bool:
    return any(p.is_meta for p in module.parameters())


def parameter_table(model: PerceptualLM) -> OrderedDict[str, tuple[int, int]]:
    """{component: (trainable, frozen)} parameter counts."""
    table: OrderedDict[str, tuple[int, int]] = OrderedDict()
    parts = [("encoder", model.extractor), ("mapper", model.mapper), ("injection", model.injection),
             ("prompt", model.prompt), ("deep_prompt", model.deep_prompt), ("adapters", model.adapters), ("llm", model.llm)]
    for name, module in parts:
        if module is None:
            continue
        tr = sum(p.numel() for p in module.parameters() if p.requires_grad)
        fr = sum(p.numel() for p in module.parameters() if not p.requires_grad)
        if tr or fr:
            table[name] = (tr, fr)
    return table


def count_trainable(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def describe_backbones(cfg: ModelConfig) -> dict[str, str]:
    """Architecture names of the configured backbones, without loading weights."""
    from scaling.models.encoders import split_encoder_name

    llm_cfg = load_config_only(cfg.llm, "llm", cfg.trust_remote_code)
    prefix, _ = split_encoder_name(cfg.encoder)
    info = describe_encoder(cfg.encoder, cfg.video_frames, cfg.trust_remote_code, **cfg.encoder_options)
    encoder = prefix or load_config_only(cfg.encoder, "encoder", cfg.trust_remote_code).model_type
    return {"llm": llm_cfg.model_type, "encoder": encoder, "modality": info.modality}
