"""Methods as data: every method of the papers is a preset of the four blocks.

A preset is a partial ``model`` config section (``extract``, ``map``, ``inject``, ``finetune``)
with the papers' numbers (DePALM supplement C.1–C.2, eP-ALM supplement B). Any field can be
overridden in YAML or with ``model.map.n_queries=16`` on the command line; a new variant is a new
entry here, never a branch in the model code.
"""

from __future__ import annotations

from typing import Any

METHODS: dict[str, dict[str, Any]] = {
    "limber-1": {
        "about": "LiMBeR(1): [CLS] of the last layer, linear projection, first-layer injection",
        "extract": {"n_levels": 1, "tokens": "cls"},
        "map": {"name": "linear"},
        "inject": {"name": "first-layer"},
        "finetune": {},
    },
    "limber-all": {
        "about": "LiMBeR(all): all tokens of the last layer, linear projection, first-layer injection",
        "extract": {"n_levels": 1, "tokens": "all"},
        "map": {"name": "linear"},
        "inject": {"name": "first-layer"},
        "finetune": {},
    },
    "mapl": {
        "about": "MAPL: all tokens, QPMapper (d_embed 256, 4 layers, 32 queries), first-layer injection",
        "extract": {"n_levels": 1, "tokens": "all"},
        "map": {"name": "qpmapper", "d_embed": 256, "n_layers": 4, "n_queries": 32, "norm": "none"},
        "inject": {"name": "first-layer"},
        "finetune": {},
    },
    "epalm-lin": {
        "about": "eP-ALM_lin: [CLS] of the last 6 layers, one shared linear layer, injected in 12 inner layers",
        "extract": {"n_levels": 6, "tokens": "cls"},
        "map": {"name": "linear", "per_level": False},
        "inject": {"name": "inner", "n_llm_layers": 12, "n_left": 1, "level_map": "epalm"},
        "finetune": {},
        "learned_positions": "text",
    },
    "epalm-pt": {
        "about": "eP-ALM_pt: eP-ALM_lin + 10 prompt tokens (no MLP)",
        "extract": {"n_levels": 6, "tokens": "cls"},
        "map": {"name": "linear", "per_level": False},
        "inject": {"name": "inner", "n_llm_layers": 12, "n_left": 1, "level_map": "epalm"},
        "finetune": {"n_prompt": 10},
        "learned_positions": "text",
    },
    "epalm": {
        "about": "eP-ALM: one linear layer per level + 10 prompt tokens through an MLP (Embedding → Linear(d, d) → Tanh → Linear(d, d))",
        "extract": {"n_levels": 6, "tokens": "cls"},
        "map": {"name": "linear", "per_level": True},
        "inject": {"name": "inner", "n_llm_layers": 12, "n_left": 1, "level_map": "epalm"},
        "finetune": {"n_prompt": 10, "prompt_mlp": True},
        "learned_positions": "text",
    },
    "epalm-ada": {
        "about": "eP-ALM_ada: one linear layer per level + sequential adapters (downsample 8, ReLU) in every LLM block",
        "extract": {"n_levels": 6, "tokens": "cls"},
        "map": {"name": "linear", "per_level": True},
        "inject": {"name": "inner", "n_llm_layers": 12, "n_left": 1, "level_map": "epalm"},
        "finetune": {"adapters": True, "adapter_reduction": 8},
        "learned_positions": "text",
    },
    "depalm": {
        "about": "DePALM (QP,L0): all tokens, QPMapper (d_embed 1024, 2 layers, 32 queries; no RMSNorm on its output "
                 "tokens, as the official insert_l0.yaml), first layer, 1 prompt token",
        "extract": {"n_levels": 1, "tokens": "all"},
        "map": {"name": "qpmapper", "d_embed": 1024, "n_layers": 2, "n_queries": 32, "norm": "none"},
        "inject": {"name": "first-layer"},
        "finetune": {"n_prompt": 1},
    },
    "depalm-qp-inner": {
        "about": "DePALM^{QP,inner}: 4 levels through one shared QPMapper, injected in 12 inner layers (n_left 3), each "
                 "with its own RMSNorm + bias tuner on the tokens (official prefix_tokens.py), 16 prompt tokens",
        "extract": {"n_levels": 4, "tokens": "all"},
        "map": {"name": "qpmapper", "d_embed": 1024, "n_layers": 2, "n_queries": 32, "norm": "none"},
        "inject": {"name": "inner", "n_llm_layers": 12, "n_left": 3, "token_norm": True, "bias_tuning": True},
        "finetune": {"n_prompt": 16},
    },
    "depalm-r-avgpool": {
        "about": "DePALM^{R-avgpool,L0}: block resampler (2x2 / 4 tokens), d_emb = d_LLM; the official AvgPool1d(4) "
                 "averages 4 adjacent channels of each token and concatenates the block's 4 (map.avgpool=tokens: the text's mean)",
        "extract": {"n_levels": 1, "tokens": "all"},
        "map": {"name": "resampler", "pool": "avgpool", "avgpool": "channels"},
        "inject": {"name": "first-layer"},
        "finetune": {"n_prompt": 1},
    },
    "depalm-r-linear": {
        "about": "DePALM^{R-linear,L0}: block resampler, linear over the concatenated block, d_emb = d_LLM",
        "extract": {"n_levels": 1, "tokens": "all"},
        "map": {"name": "resampler", "pool": "linear"},
        "inject": {"name": "first-layer"},
        "finetune": {"n_prompt": 1},
    },
    "depalm-r-qpmapper": {
        "about": "DePALM^{R-QPMapper,L0}: block resampler, per-block QPMapper (4 layers, 1 query, FFN without "
                 "activation as the official config), d_emb 768",
        "extract": {"n_levels": 1, "tokens": "all"},
        "map": {"name": "resampler", "pool": "qpmapper", "d_embed": 768, "qp_layers": 4, "qp_activation": "none"},
        "inject": {"name": "first-layer"},
        "finetune": {"n_prompt": 1},
    },
    "depalm-r-rand": {
        "about": "DePALM^{R-rand,L0}: CLS + round(f·n) random patch tokens in training (one subset per batch), all "
                 "tokens at evaluation; RMSNorm(d_feats) + Linear(d_feats → d_LLM) as the official code (map.proj_in=true: the text's 21M)",
        "extract": {"n_levels": 1, "tokens": "all"},
        "map": {"name": "rand", "f_min": 0.0625, "f_max": 0.5, "f_mean": 0.25, "f_std": 0.2, "p_max": 0.1,
                "eval_full": True, "rounding": "round", "proj_in": False},
        "inject": {"name": "first-layer"},
        "finetune": {"n_prompt": 1},
    },
    "depalm-c-attn": {
        "about": "DePALM^{c-attn}: 4 levels, P_in + one transformer layer + Linear, gated cross-attention (no attention "
                 "output projection, RMSNorm before the up-projection) in 12 inner layers (n_left 3), 16 prompt tokens; "
                 "the official recipe clips gradients at 0.05 (train.clip=0.05)",
        "extract": {"n_levels": 4, "tokens": "all"},
        "map": {"name": "xattn-resampler", "d_embed": 1024, "proj_out": True},
        "inject": {"name": "cross-attention", "n_llm_layers": 12, "n_left": 3, "attn_out_proj": False, "out_norm": "embed",
                   "dropout": 0.0},
        "finetune": {"n_prompt": 16},
    },
    "blind": {
        "about": "Blind baseline: the frozen LLM with prompt tuning and no perception (10 prompt tokens)",
        "extract": {"n_levels": 1, "tokens": "cls"},
        "map": {"name": "none"},
        "inject": {"name": "none"},
        "finetune": {"n_prompt": 10},
    },
}

# Trainable parameters reported in the DePALM paper's Table 1 (LLaMA-7B + CLIP-ViT-L/14).
PAPER_TABLE1_PARAMS = {
    "depalm": 17.9e6,
    "depalm-qp-inner": 18.1e6,
    "depalm-r-rand": 21e6,
    "depalm-r-linear": 88e6,
    "depalm-r-qpmapper": 18e6,
    "depalm-r-avgpool": 21e6,
    "depalm-c-attn": 17.9e6,
}
