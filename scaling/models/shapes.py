"""Named backbone shapes: build a real Hugging Face architecture from its config, no weights needed.

``scaling methods --llm llama-7b --encoder clip-vit-l14`` and the benchmarks use these names; the
models are then built on the ``meta`` device (parameter counts, no memory) or with random weights.
Tiny shapes (``tiny-*``) are what the tests and the demo build with real random weights. The encoder
shapes are declared by each encoder family's module (:mod:`scaling.models.encoders`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from transformers import (
    BloomConfig,
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
)

from scaling.models.encoders.registry import encoder_shapes

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

# every encoder family's shapes, declared in its module of scaling.models.encoders
ENCODER_SHAPES: dict[str, Callable[[], PretrainedConfig]] = encoder_shapes()


def shape_config(name: str, kind: str) -> PretrainedConfig | None:
    """The config of a named shape, or None when ``name`` is not a shape name."""
    table: dict[str, Any] = LLM_SHAPES if kind == "llm" else ENCODER_SHAPES
    factory = table.get(name)
    return factory() if factory else None
