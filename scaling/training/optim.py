"""AdamW over the trainable parameters only (frozen backbones never enter the optimizer).

Recipe (DePALM supplement C.3): AdamW, weight decay 0.1. Like most transformer recipes, weight decay
applies to matrices only: biases, norm scales, learned query/prompt vectors and every other 1-D
parameter are in a group with ``weight_decay=0`` (decaying a LayerNorm gain towards 0 or a bias
towards 0 has no regularising meaning). Set ``train.decay_1d=true`` to decay them too, as a plain
``AdamW(params, weight_decay=0.1)`` would.

With DeepSpeed's CPU optimizer offload the optimizer must be DeepSpeed's ``DeepSpeedCPUAdam``
(AdamW mode); :func:`build_optimizer` returns it when asked.
"""

from __future__ import annotations

import torch
from torch import nn


def param_groups(named_params: list[tuple[str, nn.Parameter]], weight_decay: float, decay_1d: bool = False) -> list[dict]:
    """Two AdamW groups: ``decay`` (≥2-D weights) and ``no_decay`` (biases, norms, 1-D vectors)."""
    decay, no_decay = [], []
    for name, p in named_params:
        if not p.requires_grad:
            continue
        one_d = p.ndim < 2 or name.endswith(".bias") or "norm" in name.lower()
        (no_decay if (one_d and not decay_1d) else decay).append(p)
    groups = []
    if decay:
        groups.append({"params": decay, "weight_decay": weight_decay, "name": "decay"})
    if no_decay:
        groups.append({"params": no_decay, "weight_decay": 0.0, "name": "no_decay"})
    return groups


def build_optimizer(
    named_params: list[tuple[str, nn.Parameter]],
    lr: float,
    weight_decay: float = 0.1,
    decay_1d: bool = False,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
    cpu_offload: bool = False,
    fused: bool = False,
) -> torch.optim.Optimizer:
    """AdamW on the trainable parameters (``requires_grad``) only. ``fused``: PyTorch's single-kernel
    AdamW (the trainer asks for it on CUDA without DeepSpeed; same update as the default one)."""
    groups = param_groups(named_params, weight_decay, decay_1d)
    if not groups:
        raise ValueError("the model has no trainable parameter: nothing to optimise (check the method preset)")
    if cpu_offload:
        from deepspeed.ops.adam import DeepSpeedCPUAdam

        return DeepSpeedCPUAdam(groups, lr=lr, betas=betas, eps=eps, adamw_mode=True)
    return torch.optim.AdamW(groups, lr=lr, betas=betas, eps=eps, fused=fused or None)
