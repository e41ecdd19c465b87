"""Reading encoder weights from local files, safely, and loading them with an exact key match.

Files: ``*.safetensors`` (safetensors) or anything ``torch.load(weights_only=True)`` reads (``.bin``,
``.pth``, ``.pt``); nothing read from a file can run code. Wrappers of training checkpoints are
unwrapped (``{"state_dict": ...}``, ``{"model": ...}``, a ``module.`` prefix). A key mismatch is a
:class:`ConfigError` listing the missing and unexpected keys: a partial match is never accepted.
"""

from __future__ import annotations

import os

import torch
from torch import nn

from scaling.config.base import ConfigError

WEIGHT_FILES = ("model.safetensors", "open_clip_model.safetensors", "pytorch_model.bin", "open_clip_pytorch_model.bin")


def find_weights(folder: str, what: str) -> str:
    """The weights file of a hub-layout folder (safetensors preferred)."""
    for name in WEIGHT_FILES:
        path = os.path.join(folder, name)
        if os.path.isfile(path):
            return path
    raise ConfigError(f"{what}: no weights in {folder} (looked for {list(WEIGHT_FILES)})")


def read_state_dict(path: str, what: str) -> dict[str, torch.Tensor]:
    """A flat ``{name: tensor}`` from ``path`` (see the module docstring)."""
    path = os.path.expanduser(path)
    if not os.path.isfile(path):
        raise ConfigError(f"{what}: checkpoint {path!r} does not exist; give the local weights file")
    try:
        if path.endswith(".safetensors"):
            from safetensors.torch import load_file

            sd = load_file(path)
        else:
            sd = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as err:  # noqa: BLE001 - safetensors/pickle raise many kinds on a bad file
        raise ConfigError(f"{what}: cannot read checkpoint {path!r} ({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}); "
                          f"it must be a safetensors file or a torch.save'd state dict of tensors") from None
    for key in ("state_dict", "model", "module"):
        if isinstance(sd, dict) and isinstance(sd.get(key), dict) and not torch.is_tensor(sd.get(key)):
            sd = sd[key]
    if not isinstance(sd, dict) or not sd or not all(torch.is_tensor(v) for v in sd.values()):
        raise ConfigError(f"{what}: {path!r} does not hold a state dict of tensors")
    if all(k.startswith("module.") for k in sd):
        sd = {k[len("module."):]: v for k, v in sd.items()}
    return sd


def _listing(keys: list[str], n: int = 12) -> str:
    keys = sorted(keys)
    return ", ".join(keys[:n]) + (f", ... ({len(keys)} in all)" if len(keys) > n else "")


def load_exact(model: nn.Module, sd: dict[str, torch.Tensor], what: str, path: str) -> None:
    """Load ``sd`` into ``model``; any missing/unexpected key or shape mismatch is a ConfigError."""
    check_keys(model, sd, what, path)
    model.load_state_dict(sd, strict=True, assign=any(p.is_meta for p in model.parameters()))


def check_keys(model: nn.Module, sd: dict[str, torch.Tensor], what: str, path: str) -> None:
    """ConfigError listing missing/unexpected keys and shape mismatches; ``model`` may be on ``meta``
    (checking before a large model is built for real)."""
    own = model.state_dict()
    missing = [k for k in own if k not in sd]
    unexpected = [k for k in sd if k not in own]
    shapes = [f"{k} {tuple(sd[k].shape)} vs {tuple(own[k].shape)}" for k in own if k in sd and sd[k].shape != own[k].shape]
    if missing or unexpected or shapes:
        parts = []
        if missing:
            parts.append(f"missing keys: {_listing(missing)}")
        if unexpected:
            parts.append(f"unexpected keys: {_listing(unexpected)}")
        if shapes:
            parts.append(f"shape mismatches (checkpoint vs architecture): {_listing(shapes, 6)}")
        raise ConfigError(f"{what}: the checkpoint {path} does not match the architecture ({'; '.join(parts)}). "
                          f"Check the architecture name and that the file holds its weights")
