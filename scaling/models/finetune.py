"""Block 4, *fine-tune*: the small extra trainable pieces beside the mapping.

- :class:`PromptTuning`: ``n_pt`` learned tokens after the perceptual tokens (optionally produced
  by an MLP over a learned embedding, as in eP-ALM).
- :class:`DeepPrompt`: a separate set of learned tokens for every LLM layer (eP-ALM's deep prompt).
- :func:`enable_bias_tuning`: biases and norm scales of a backbone become trainable; linear layers
  without a bias get a zero-initialised one (so the model's output is unchanged at start).
- :class:`BottleneckAdapter` + :func:`attach_adapters`: sequential adapters after the attention and
  the feed-forward output of every LLM layer (down-sample 8, ReLU, zero-initialised up-projection).
- :func:`apply_lora`: LoRA through peft (``inject_adapter_in_model``), on the LLM's attention.
"""

from __future__ import annotations

import torch
from torch import nn


class PromptTuning(nn.Module):
    """``n`` learned tokens ``[n, d]``; with ``mlp_hidden``, tokens = MLP(embedding) (eP-ALM's
    ``InputPrompts``: Embedding(n, d) → Linear(d, mlp_hidden) → Tanh → Linear(mlp_hidden, d), with
    ``mlp_hidden = d`` in the official code; the embedding starts as nn.Embedding does, N(0, 1))."""

    def __init__(self, n: int, d: int, mlp_hidden: int = 0, init_std: float | None = None):
        super().__init__()
        init_std = init_std if init_std is not None else (1.0 if mlp_hidden else 0.02)
        self.tokens = nn.Parameter(torch.randn(n, d) * init_std)
        self.mlp = (
            nn.Sequential(nn.Linear(d, mlp_hidden), nn.Tanh(), nn.Linear(mlp_hidden, d)) if mlp_hidden else None
        )

    def forward(self) -> torch.Tensor:
        """→ ``[n, d]``."""
        return self.mlp(self.tokens) if self.mlp is not None else self.tokens


class DeepPrompt(nn.Module):
    """``n`` learned tokens per LLM layer, ``[n_layers, n, d]``, replacing the previous layer's."""

    def __init__(self, n_layers: int, n: int, d: int, init_std: float = 0.02):
        super().__init__()
        self.tokens = nn.Parameter(torch.randn(n_layers, n, d) * init_std)

    def forward(self) -> torch.Tensor:
        return self.tokens


def _is_norm(module: nn.Module) -> bool:
    name = type(module).__name__.lower()
    return isinstance(module, (nn.LayerNorm, nn.RMSNorm, nn.GroupNorm)) or name.endswith(("rmsnorm", "layernorm", "norm"))


# Encoder modules applied after the layer stack: the pooler and head get no gradient (a trainable
# parameter without a gradient makes ZeRO-2 hang); the final norm (model.extract.norm) stays frozen.
UNUSED_ENCODER_HEADS = ("layernorm", "post_layernorm", "pooler", "head", "fc_norm")


def enable_bias_tuning(backbone: nn.Module, exclude: tuple[str, ...] = ()) -> list[str]:
    """Make biases and norm weights of ``backbone`` trainable; add zero biases where absent.

    Modules whose name (relative to ``backbone``) starts with one of ``exclude`` are skipped.
    Returns the names of the parameters made trainable. Added biases use the backbone's dtype.
    """
    names = []
    for mod_name, module in backbone.named_modules():
        if any(mod_name == e or mod_name.startswith(e + ".") for e in exclude):
            continue
        if isinstance(module, nn.Linear):
            if module.bias is None:
                w = module.weight
                module.bias = nn.Parameter(torch.zeros(w.shape[0], dtype=w.dtype, device=w.device))
            module.bias.requires_grad_(True)
            names.append(f"{mod_name}.bias")
        elif _is_norm(module):
            for pname, p in module.named_parameters(recurse=False):
                p.requires_grad_(True)
                names.append(f"{mod_name}.{pname}")
    return names


class BottleneckAdapter(nn.Module):
    """x + up(relu(down(x))), down: d → d/reduction; up zero-initialised (identity at start)."""

    def __init__(self, d: int, reduction: int = 8):
        super().__init__()
        self.down = nn.Linear(d, max(1, d // reduction))
        self.up = nn.Linear(max(1, d // reduction), d)
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x ``[..., d]`` → ``[..., d]`` (same dtype as x)."""
        dtype = self.down.weight.dtype
        return x + self.up(torch.relu(self.down(x.to(dtype)))).to(x.dtype)


def attach_adapters(layers: nn.ModuleList, attn_attr: str, ffn_attr: str, d: int, reduction: int = 8) -> tuple[nn.ModuleList, list]:
    """One adapter after the attention and one after the FFN of each layer, through forward hooks.

    Returns (adapters ``[2 * n_layers]``, hook handles).
    """
    adapters = nn.ModuleList()
    handles = []
    for layer in layers:
        for attr in (attn_attr, ffn_attr):
            adapter = BottleneckAdapter(d, reduction)
            adapters.append(adapter)

            def hook(_module, _inputs, output, adapter=adapter):
                if isinstance(output, tuple):
                    return (adapter(output[0]),) + tuple(output[1:])
                return adapter(output)

            handles.append(getattr(layer, attr).register_forward_hook(hook))
    return adapters, handles


def apply_lora(llm: nn.Module, rank: int, alpha: float, dropout: float, targets: list[str]) -> list[str]:
    """Inject LoRA adapters (peft) into ``llm``'s ``targets`` modules; returns the LoRA parameter names."""
    from peft import LoraConfig, inject_adapter_in_model

    config = LoraConfig(r=rank, lora_alpha=alpha, lora_dropout=dropout, target_modules=list(targets), bias="none")
    trainable_before = {id(p) for p in llm.parameters() if p.requires_grad}  # e.g. bias tuning
    inject_adapter_in_model(config, llm)
    names = [n for n, _ in llm.named_parameters() if "lora_" in n]
    for n, p in llm.named_parameters():
        p.requires_grad_("lora_" in n or id(p) in trainable_before)
    return names
