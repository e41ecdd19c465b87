"""Tiny random backbones saved as real Hugging Face directories (tests, smoke runs, the demo).

``save_tiny_llm`` writes a small causal LM of a real architecture (LLaMA, OPT, GPT-2, Qwen2) and a
word-level tokenizer; ``save_tiny_encoder`` writes a small encoder with its family's tiny builder
(each module of :mod:`scaling.models.encoders` declares its ``tiny-*`` shapes and builder). Users' code then loads them from the
directory, through exactly the path used for real weights. Nothing is downloaded.
"""

from __future__ import annotations

import os

import torch
from transformers import AutoModelForCausalLM, PreTrainedTokenizerFast

from scaling.models.encoders.registry import all_loaders
from scaling.models.shapes import LLM_SHAPES

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
    """Write the tiny random encoder ``tiny-<arch>`` (one of :data:`TINY_ENCODER_ARCHS`) with its family's
    own tiny builder (:mod:`scaling.models.encoders`)."""
    for loader in all_loaders():
        if arch in loader.tiny_archs:
            return loader.tiny(out_dir, arch, seed=seed, **config_overrides)
    raise ValueError(f"no tiny encoder {arch!r}; known: {TINY_ENCODER_ARCHS}")


TINY_LLM_ARCHS = ["llama", "opt", "gpt2", "qwen2"]  # built for every test session (tests/conftest.py)
# every decoder-only architecture with a tiny shape (the LLM matrix test builds the rest on demand)
TINY_LLM_MATRIX = TINY_LLM_ARCHS + ["mistral", "qwen3", "gemma", "gemma2", "gemma3", "phi3", "gpt-neox", "falcon",
                                    "olmo2", "gptj", "bloom"]
# every encoder family's tiny shapes (tiny-<arch>), in the registry's order
TINY_ENCODER_ARCHS = [arch for loader in all_loaders() for arch in loader.tiny_archs]


def tiny_media(arch: str, batch: int = 2) -> dict[str, torch.Tensor]:
    """Random media matching a tiny encoder's input, from its description (tiny ViT/CLIP/...: 32×32;
    TimeSformer/VideoMAE: 4 frames; AST: 64×32; Whisper: 100 frames × 16 mel bins; CLAP: 1001 × 64)."""
    from scaling.models.backbones import describe_encoder

    info = describe_encoder(f"tiny-{arch}")
    if info.modality == "video":
        return {"video": torch.randn(batch, info.num_frames, 3, info.image_size, info.image_size)}
    if info.modality == "audio":
        return {"audio": torch.randn(batch, info.max_length, info.num_mel_bins)}
    return {"pixel_values": torch.randn(batch, 3, info.image_size, info.image_size)}


# ------------------------------------------------- encoders of other libraries (timm, open_clip, MAViL)
# their tiny builders live in their loader modules; imported here for the tests and the demo
from scaling.models.encoders.mavil_loader import save_tiny_mavil  # noqa: E402
from scaling.models.encoders.open_clip_loader import TINY_OPEN_CLIP_CFG, save_tiny_open_clip  # noqa: E402
from scaling.models.encoders.timm_loader import TINY_TIMM_ARGS, save_tiny_timm  # noqa: E402

__all__ = [
    "TINY_ENCODER_ARCHS", "TINY_LLM_ARCHS", "TINY_LLM_MATRIX", "TINY_OPEN_CLIP_CFG", "TINY_TIMM_ARGS", "save_tiny_encoder",
    "save_tiny_llm", "save_tiny_mavil", "save_tiny_open_clip", "save_tiny_timm", "tiny_media", "word_tokenizer",
]
