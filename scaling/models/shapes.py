"""Named backbone shapes: build a real Hugging Face architecture from its config, no weights needed.

``scaling methods --llm llama-7b --encoder clip-vit-l14`` and the benchmarks use these names; the
models are then built on the ``meta`` device (parameter counts, no memory) or with random weights.
Tiny shapes (``tiny-*``) are what the tests and the demo build with real random weights.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from transformers import (
    ASTConfig,
    BloomConfig,
    ClapAudioConfig,
    CLIPVisionConfig,
    Dinov2Config,
    FalconConfig,
    Gemma2Config,
    Gemma3TextConfig,
    GemmaConfig,
    GPT2Config,
    GPTJConfig,
    GPTNeoXConfig,
    LlamaConfig,
    MistralConfig,
    Olmo2Config,
    OPTConfig,
    Phi3Config,
    PretrainedConfig,
    Qwen2Config,
    Qwen3Config,
    SiglipVisionConfig,
    TimesformerConfig,
    VideoMAEConfig,
    ViTConfig,
    WhisperConfig,
)

_TINY_DECODER = dict(
    hidden_size=64, intermediate_size=128, num_hidden_layers=4, num_attention_heads=4, num_key_value_heads=2,
    vocab_size=256, max_position_embeddings=256,
)

# name -> zero-argument factory of the transformers config
LLM_SHAPES: dict[str, Callable[[], PretrainedConfig]] = {
    "llama-7b": lambda: LlamaConfig(
        hidden_size=4096, intermediate_size=11008, num_hidden_layers=32, num_attention_heads=32,
        num_key_value_heads=32, vocab_size=32000, max_position_embeddings=2048, rms_norm_eps=1e-6,
    ),
    "llama-13b": lambda: LlamaConfig(
        hidden_size=5120, intermediate_size=13824, num_hidden_layers=40, num_attention_heads=40,
        num_key_value_heads=40, vocab_size=32000, max_position_embeddings=2048, rms_norm_eps=1e-6,
    ),
    "opt-6.7b": lambda: OPTConfig(
        hidden_size=4096, ffn_dim=16384, num_hidden_layers=32, num_attention_heads=32,
        vocab_size=50272, word_embed_proj_dim=4096, max_position_embeddings=2048,
    ),
    "opt-2.7b": lambda: OPTConfig(
        hidden_size=2560, ffn_dim=10240, num_hidden_layers=32, num_attention_heads=32,
        vocab_size=50272, word_embed_proj_dim=2560, max_position_embeddings=2048,
    ),
    "gpt2": lambda: GPT2Config(),
    "qwen2-0.5b": lambda: Qwen2Config(
        hidden_size=896, intermediate_size=4864, num_hidden_layers=24, num_attention_heads=14,
        num_key_value_heads=2, vocab_size=151936, max_position_embeddings=32768, tie_word_embeddings=True,
    ),
    # tiny shapes for tests, CPU smoke runs and the demo
    "tiny-llama": lambda: LlamaConfig(
        hidden_size=64, intermediate_size=128, num_hidden_layers=4, num_attention_heads=4,
        num_key_value_heads=2, vocab_size=256, max_position_embeddings=256,
    ),
    "tiny-opt": lambda: OPTConfig(
        hidden_size=64, ffn_dim=128, num_hidden_layers=4, num_attention_heads=4, vocab_size=256,
        word_embed_proj_dim=64, max_position_embeddings=256,
    ),
    "tiny-gpt2": lambda: GPT2Config(n_embd=64, n_layer=4, n_head=4, vocab_size=256, n_positions=256),
    "tiny-qwen2": lambda: Qwen2Config(
        hidden_size=64, intermediate_size=128, num_hidden_layers=4, num_attention_heads=4,
        num_key_value_heads=2, vocab_size=256, max_position_embeddings=256,
    ),
    # the rest of the decoder-only matrix (tests/models/test_llm_matrix.py): 4 layers, width 64, GQA
    # where the architecture has it; sliding windows wider than any test sequence
    "tiny-mistral": lambda: MistralConfig(**_TINY_DECODER, sliding_window=None),
    "tiny-qwen3": lambda: Qwen3Config(**_TINY_DECODER, head_dim=16),
    "tiny-gemma": lambda: GemmaConfig(**_TINY_DECODER, head_dim=16),
    "tiny-gemma2": lambda: Gemma2Config(
        **_TINY_DECODER, head_dim=16, sliding_window=128, final_logit_softcapping=2.0, attn_logit_softcapping=50.0,
    ),
    "tiny-gemma3": lambda: Gemma3TextConfig(**_TINY_DECODER, head_dim=16, sliding_window=128),
    "tiny-phi3": lambda: Phi3Config(**_TINY_DECODER, pad_token_id=0),
    "tiny-olmo2": lambda: Olmo2Config(**_TINY_DECODER),
    "tiny-gpt-neox": lambda: GPTNeoXConfig(
        hidden_size=64, intermediate_size=128, num_hidden_layers=4, num_attention_heads=4, vocab_size=256,
        max_position_embeddings=256, rotary_pct=0.5,
    ),
    "tiny-falcon": lambda: FalconConfig(
        hidden_size=64, num_hidden_layers=4, num_attention_heads=4, vocab_size=256, max_position_embeddings=256,
        new_decoder_architecture=False, multi_query=True, parallel_attn=True, alibi=False,
    ),
    "tiny-gptj": lambda: GPTJConfig(n_embd=64, n_layer=4, n_head=4, rotary_dim=8, vocab_size=256, n_positions=256),
    "tiny-bloom": lambda: BloomConfig(hidden_size=64, n_layer=4, n_head=4, vocab_size=256),
}

ENCODER_SHAPES: dict[str, Callable[[], PretrainedConfig]] = {
    "clip-vit-l14": lambda: CLIPVisionConfig(
        hidden_size=1024, intermediate_size=4096, num_hidden_layers=24, num_attention_heads=16,
        image_size=224, patch_size=14, projection_dim=768,
    ),
    "clip-vit-b16": lambda: CLIPVisionConfig(
        hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
        image_size=224, patch_size=16,
    ),
    "vit-b16": lambda: ViTConfig(),
    "vit-l16": lambda: ViTConfig(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24, num_attention_heads=16),
    "dinov2-b14": lambda: Dinov2Config(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, image_size=518, patch_size=14),
    "dinov2-l14": lambda: Dinov2Config(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, image_size=518, patch_size=14),
    "siglip-b16": lambda: SiglipVisionConfig(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12, image_size=224, patch_size=16),
    "timesformer-b": lambda: TimesformerConfig(image_size=224, patch_size=16, num_frames=8),
    "ast-b": lambda: ASTConfig(num_mel_bins=128, max_length=1024),
    "videomae-b": lambda: VideoMAEConfig(image_size=224, patch_size=16, num_frames=16, tubelet_size=2),
    "clap-htsat": lambda: ClapAudioConfig(enable_fusion=False),
    "whisper-base": lambda: WhisperConfig(d_model=512, encoder_layers=6, encoder_attention_heads=8, decoder_layers=6,
                                          decoder_attention_heads=8, encoder_ffn_dim=2048, decoder_ffn_dim=2048, num_mel_bins=80),
    # tiny shapes
    "tiny-vit": lambda: ViTConfig(
        hidden_size=32, intermediate_size=64, num_hidden_layers=3, num_attention_heads=4, image_size=32, patch_size=8,
    ),
    "tiny-clip": lambda: CLIPVisionConfig(
        hidden_size=32, intermediate_size=64, num_hidden_layers=3, num_attention_heads=4, image_size=32, patch_size=8,
    ),
    "tiny-dinov2": lambda: Dinov2Config(
        hidden_size=32, intermediate_size=64, num_hidden_layers=3, num_attention_heads=4, image_size=32, patch_size=8,
    ),
    "tiny-siglip": lambda: SiglipVisionConfig(
        hidden_size=32, intermediate_size=64, num_hidden_layers=3, num_attention_heads=4, image_size=32, patch_size=8,
    ),
    "tiny-timesformer": lambda: TimesformerConfig(
        hidden_size=32, intermediate_size=64, num_hidden_layers=3, num_attention_heads=4, image_size=32,
        patch_size=8, num_frames=4,
    ),
    "tiny-ast": lambda: ASTConfig(
        hidden_size=32, intermediate_size=64, num_hidden_layers=3, num_attention_heads=4, num_mel_bins=32,
        max_length=64, patch_size=16, frequency_stride=16, time_stride=16,
    ),
    "tiny-videomae": lambda: VideoMAEConfig(
        hidden_size=32, intermediate_size=64, num_hidden_layers=3, num_attention_heads=4, image_size=32,
        patch_size=8, num_frames=4, tubelet_size=2,
    ),
    "tiny-clap": lambda: ClapAudioConfig(  # real input size (1001 x 64 mel, spec 256), tiny widths: 32 x 32 tokens
        spec_size=256, patch_size=4, patch_stride=(4, 4), depths=[1, 2], num_attention_heads=[2, 4], hidden_size=32,
        patch_embeds_hidden_size=16, num_mel_bins=64, window_size=8, enable_fusion=False, projection_hidden_size=32,
        projection_dim=16,
    ),
    "tiny-whisper": lambda: WhisperConfig(  # 1 s chunks: 100 mel frames -> 50 tokens
        d_model=32, encoder_layers=3, encoder_attention_heads=4, decoder_layers=1, decoder_attention_heads=4,
        encoder_ffn_dim=64, decoder_ffn_dim=64, num_mel_bins=16, max_source_positions=50, max_target_positions=16,
        vocab_size=64, pad_token_id=0, bos_token_id=1, eos_token_id=2, decoder_start_token_id=1,
    ),
}


def shape_config(name: str, kind: str) -> PretrainedConfig | None:
    """The config of a named shape, or None when ``name`` is not a shape name."""
    table: dict[str, Any] = LLM_SHAPES if kind == "llm" else ENCODER_SHAPES
    factory = table.get(name)
    return factory() if factory else None
