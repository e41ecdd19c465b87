"""Tiny random backbones saved as real Hugging Face directories (tests, smoke runs, the demo).

``save_tiny_llm`` writes a small causal LM of a real architecture (LLaMA, OPT, GPT-2, Qwen2) and a
word-level tokenizer; ``save_tiny_encoder`` writes a small encoder (ViT, CLIP vision, DINOv2,
SigLIP vision, TimeSformer, AST) and its preprocessor config. Users' code then loads them from the
directory, through exactly the path used for real weights. Nothing is downloaded.
"""

from __future__ import annotations

import os

import torch
from transformers import AutoModelForCausalLM, PreTrainedTokenizerFast

from scaling.models.shapes import ENCODER_SHAPES, LLM_SHAPES

SPECIAL_TOKENS = ["<pad>", "<s>", "</s>", "<unk>", "</a>"]

DEFAULT_WORDS = (
    "a an the of in on at to and with is are there what which how many color colour shape size left right "
    "above below top bottom small big large red green blue yellow purple orange white black gray circle square "
    "triangle star picture image photo video audio sound tone beep buzz high low short long moving up down "
    "question answer caption yes no one two three four five six seven eight nine ten zero . , ? : "
    "object objects scene background next near far"
).split()


def word_tokenizer(words: list[str] | None = None, model_max_length: int = 256) -> PreTrainedTokenizerFast:
    """A word-level tokenizer (whitespace + punctuation split, lower-cased) over ``words``."""
    from tokenizers import Tokenizer, normalizers, pre_tokenizers
    from tokenizers.models import WordLevel
    from tokenizers.processors import TemplateProcessing

    vocab = {tok: i for i, tok in enumerate(SPECIAL_TOKENS)}
    for w in words or DEFAULT_WORDS:
        vocab.setdefault(w.lower(), len(vocab))
    tok = Tokenizer(WordLevel(vocab, unk_token="<unk>"))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation()])
    tok.post_processor = TemplateProcessing(single="<s> $A", pair="<s> $A $B", special_tokens=[("<s>", vocab["<s>"])])
    from tokenizers import decoders

    tok.decoder = decoders.WordPiece(prefix="##", cleanup=True)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>", unk_token="<unk>",
        additional_special_tokens=["</a>"], model_max_length=model_max_length,
    )


def save_tiny_llm(out_dir: str, arch: str = "llama", words: list[str] | None = None, seed: int = 0, **config_overrides) -> str:
    """Write a tiny random causal LM of ``arch`` (one of :data:`TINY_LLM_MATRIX`) + tokenizer to ``out_dir``."""
    tokenizer = word_tokenizer(words)
    cfg = LLM_SHAPES[f"tiny-{arch}"]()
    vocab = max(len(tokenizer), 8)
    for key, value in dict(vocab_size=vocab, bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                           pad_token_id=tokenizer.pad_token_id, **config_overrides).items():
        setattr(cfg, key, value)
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(cfg)
    os.makedirs(out_dir, exist_ok=True)
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    return out_dir


def save_tiny_encoder(out_dir: str, arch: str = "vit", seed: int = 0, **config_overrides) -> str:
    """Write a tiny random encoder (vit|clip|dinov2|siglip|timesformer|ast) + preprocessor config."""
    import transformers

    from scaling.models.backbones import ENCODER_TYPES

    cfg = ENCODER_SHAPES[f"tiny-{arch}"]()
    for key, value in config_overrides.items():
        setattr(cfg, key, value)
    cls = getattr(transformers, ENCODER_TYPES[cfg.model_type][0])
    torch.manual_seed(seed)
    kwargs = {"add_pooling_layer": False} if cfg.model_type == "vit" else {}
    model = cls._from_config(cfg, **kwargs)
    os.makedirs(out_dir, exist_ok=True)
    model.save_pretrained(out_dir)
    return out_dir


TINY_LLM_ARCHS = ["llama", "opt", "gpt2", "qwen2"]  # built for every test session (tests/conftest.py)
# every decoder-only architecture with a tiny shape (the LLM matrix test builds the rest on demand)
TINY_LLM_MATRIX = TINY_LLM_ARCHS + ["mistral", "qwen3", "gemma", "gemma2", "gemma3", "phi3", "gpt-neox", "falcon",
                                    "olmo2", "gptj", "bloom"]
TINY_ENCODER_ARCHS = ["vit", "clip", "dinov2", "siglip", "timesformer", "ast", "videomae", "whisper", "clap"]


def tiny_media(arch: str, batch: int = 2) -> dict[str, torch.Tensor]:
    """Random media matching a tiny encoder's input (tiny ViT/CLIP/...: 32×32; TimeSformer/VideoMAE: 4 frames;
    AST: 64×32; Whisper: 100 frames × 16 mel bins; CLAP: 1001 × 64)."""
    if arch in ("timesformer", "videomae"):
        return {"video": torch.randn(batch, 4, 3, 32, 32)}
    if arch == "ast":
        return {"audio": torch.randn(batch, 64, 32)}
    if arch == "whisper":
        return {"audio": torch.randn(batch, 100, 16)}
    if arch == "clap":
        return {"audio": torch.randn(batch, 1001, 64)}
    return {"pixel_values": torch.randn(batch, 3, 32, 32)}


# ------------------------------------------------- encoders of other libraries (timm, open_clip, MAViL)

TINY_TIMM_ARGS = dict(img_size=32, patch_size=8, embed_dim=32, depth=3, num_heads=4)
TINY_OPEN_CLIP_CFG = {
    "embed_dim": 16,
    "vision_cfg": {"image_size": 32, "layers": 3, "width": 32, "patch_size": 8, "head_width": 8},
    "text_cfg": {"context_length": 8, "vocab_size": 64, "width": 16, "heads": 2, "layers": 1},
}


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


def save_tiny_mavil(path: str, seed: int = 0, n_frames: int = 64, dim: int = 64, depth: int = 3) -> str:
    """A tiny random MAViL audio encoder (128 mel bins, ``n_frames`` frames, heads = dim/64) saved as
    a safetensors state dict with MAViL's key names: load it as ``mavil:<path>``."""
    from safetensors.torch import save_file

    from scaling.models.mavil import MAViLAudioEncoder, MAViLConfig

    torch.manual_seed(seed)
    model = MAViLAudioEncoder(MAViLConfig(n_frames=n_frames, n_mels=128, dim=dim, depth=depth, heads=max(1, dim // 64)))
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, path)
    return path
