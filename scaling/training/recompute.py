"""Activation recomputation (gradient checkpointing) of the frozen LLM's decoder layers.

Hugging Face's ``gradient_checkpointing_enable`` only acts on modules in training mode, and the
frozen backbones stay in eval mode here (no dropout in a frozen model). So each decoder layer's
``forward`` is wrapped in non-reentrant ``torch.utils.checkpoint``: activations inside a layer are
recomputed in the backward pass. Non-reentrant checkpointing needs no input that requires grad, so
it works with frozen embeddings, with adapters and LoRA inside the layers (their forward hooks run
again during recomputation), and under ZeRO-3 (parameters are gathered by the submodules' hooks
during recomputation). The layers' forward pre-hooks (inner injection, deep prompts) run outside
the checkpointed region. Parameter names do not change, so adapters stay compatible.

``model.llm.enable_input_require_grads()`` is called as well, which the reentrant variant
needs; it is harmless here.
"""

from __future__ import annotations

import functools

import torch
from torch.utils.checkpoint import checkpoint


def enable(model) -> int:
    """Wrap every decoder layer of ``model.layout.layers``; returns the number of layers wrapped."""
    n = 0
    for layer in model.layout.layers:
        if getattr(layer, "_scaling_recompute", False):
            continue
        original = layer.forward

        @functools.wraps(original)
        def forward(*args, _original=original, **kwargs):
            if not torch.is_grad_enabled():
                return _original(*args, **kwargs)
            return checkpoint(_original, *args, use_reentrant=False, **kwargs)

        layer.forward = forward
        layer._scaling_recompute = True
        n += 1
    if hasattr(model.llm, "enable_input_require_grads"):
        try:
            model.llm.enable_input_require_grads()
        except (NotImplementedError, AttributeError):
            pass
    return n
