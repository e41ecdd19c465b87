"""Weights-only loading of DeepSpeed's checkpoint files: ``torch.load(weights_only=True)`` and a small allowlist.

DeepSpeed pickles three bookkeeping classes (loss scalers, the ZeRO stage enum, fragment addresses) beside its
tensors. :func:`weights_only_deepspeed_load` replaces its checkpoint engine's ``load`` so that a resume never
unpickles anything else; the integrity check of :mod:`scaling.training.manifest` loads the same way.
"""

from __future__ import annotations

import torch


def deepspeed_safe_globals() -> list:
    """The only non-tensor classes DeepSpeed pickles into its checkpoints (allowed for weights-only loads)."""
    from deepspeed.runtime.fp16.loss_scaler import DynamicLossScaler, LossScaler
    from deepspeed.runtime.zero.config import ZeroStageEnum
    from deepspeed.utils.tensor_fragment import fragment_address

    return [LossScaler, DynamicLossScaler, ZeroStageEnum, fragment_address]


def weights_only_deepspeed_load(path: str, map_location=None):
    """Drop-in for DeepSpeed's checkpoint-engine ``load``: ``torch.load(weights_only=True)`` + a small allowlist."""
    with torch.serialization.safe_globals(deepspeed_safe_globals()):
        return torch.load(path, map_location=map_location, weights_only=True)
