"""The ``map`` and ``inject`` sections' names and options, as data: what a config may ask of the model blocks.

The model package implements them (``scaling.models.mapping.MAPPERS``, ``scaling.models.injection.INJECTIONS``:
one class per name, whose keyword arguments are these options); the config validates against these tables
without importing the models, and tests/models/test_block_options.py checks that the two agree. A new mapper or
injection is its class and registry entry plus one line here.
"""

from __future__ import annotations

from typing import Any

from scaling.config.base import suggest

# mapper id -> the options of its ``map`` section (its class's keyword arguments, in their order)
MAPPER_OPTIONS: dict[str, list[str]] = {
    "linear": ["per_level"],
    "mlp": ["hidden", "per_level"],
    "qpmapper": ["d_embed", "n_layers", "n_queries", "n_heads", "dropout", "ffn_dim", "norm"],
    "resampler": ["pool", "d_embed", "qp_layers", "n_heads", "dropout", "avgpool", "qp_activation"],
    "rand": ["f_min", "f_max", "f_mean", "f_std", "p_max", "eval_full", "rounding", "proj_in"],
    "xattn-resampler": ["d_embed", "n_heads", "dropout", "proj_out"],
}
# injection id -> the options of its ``inject`` section
INJECTION_OPTIONS: dict[str, list[str]] = {
    "first-layer": [],
    "inner": ["n_llm_layers", "n_left", "level_map", "token_norm", "bias_tuning"],
    "cross-attention": ["n_llm_layers", "n_left", "n_heads", "dropout", "attn_out_proj", "out_norm", "level_map"],
    "none": [],
}
# model.norm_eps id -> the epsilon of every RMSNorm and LayerNorm of the map and inject blocks (set by
# scaling.models.layers.set_norm_eps once the blocks are built)
NORM_EPS: dict[str, dict[str, float]] = {
    # the official DePALM get_norm_layer(..., eps=1e-4) (depalm/utils/utility.py) and its QPMapper's
    # nn.TransformerEncoderLayer(layer_norm_eps=1e-4) (common.py); scaling's since config format 2
    "official": {"rmsnorm": 1e-4, "layernorm": 1e-4},
    # config format 1 (scaling before the fidelity changes of issue 14): every RMSNorm of the blocks eps=1e-6 (the
    # QPMapper's output norm, the block resampler's, R-rand's, c-attn's two), every LayerNorm PyTorch's 1e-5 (the
    # QPMapper's and R-QPMapper's transformer layers)
    "format-1": {"rmsnorm": 1e-6, "layernorm": 1e-5},
}
POSITIVE_OPTIONS = ("n_queries", "d_embed", "n_heads", "ffn_dim", "hidden")  # sizes and counts of a mapper


def check_mapper_args(name: str, kwargs: dict[str, Any]) -> list[str]:
    """Problems with a ``map`` section (unknown mapper or options), as messages."""
    if name not in MAPPER_OPTIONS:
        return [f"unknown mapper {name!r}{suggest(name, MAPPER_OPTIONS)}; valid: {sorted(MAPPER_OPTIONS)}"]
    valid = MAPPER_OPTIONS[name]
    problems = [
        f"mapper {name!r} has no option {k!r}{suggest(k, valid)}; valid: {valid}" for k in kwargs if k not in valid
    ]
    for key in POSITIVE_OPTIONS:  # sizes and counts: a 0 would build an empty block (or fail after loading)
        value = kwargs.get(key)
        if key in valid and value is not None and not (isinstance(value, int) and not isinstance(value, bool) and value >= 1):
            problems.append(f"{key} must be a whole number >= 1, got {value!r} (set map.{key}, e.g. map.{key}=32)")
    dropout = kwargs.get("dropout")
    if "dropout" in valid and dropout is not None and not (isinstance(dropout, (int, float)) and 0 <= dropout < 1):
        problems.append(f"dropout must be in [0, 1), got {dropout!r}")
    return problems


def check_injection_args(name: str, kwargs: dict[str, Any]) -> list[str]:
    """Problems with an ``inject`` section (unknown injection or options), as messages."""
    if name not in INJECTION_OPTIONS:
        return [f"unknown injection {name!r}{suggest(name, INJECTION_OPTIONS)}; valid: {sorted(INJECTION_OPTIONS)}"]
    valid = INJECTION_OPTIONS[name]
    return [f"injection {name!r} has no option {k!r}{suggest(k, valid)}; valid: {valid}" for k in kwargs if k not in valid]
