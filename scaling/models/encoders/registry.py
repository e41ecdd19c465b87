"""The registry of encoder loaders (``prefix`` → :class:`EncoderLoader`).

A loader turns the ``REF`` of ``model.encoder=PREFIX:REF`` into:

* ``describe(ref, video_frames)`` → :class:`~scaling.models.backbones.EncoderInfo` without weights
  (modality, width, layers, special tokens, patch grid);
* ``load(ref, dtype, device, video_frames, meta)`` → a frozen :class:`~scaling.models.backbones.PerceptualEncoder`
  (``meta=True``: real shapes on the meta device, no weights read);
* ``media(ref, info, data_cfg)`` → the :class:`~scaling.common.media.MediaSpec` its library prescribes
  (``MediaSpec.preprocess`` names it; cached features record it);
* ``check(ref)`` → problems found before training (missing files), empty when fine;
* ``identity(ref)`` → a short name for feature-cache signatures.

Entries are added by the loader modules at import time (:data:`ENCODER_LOADERS`).
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Callable
from typing import Any

from scaling.config.base import ConfigError


@dataclasses.dataclass(frozen=True)
class EncoderLoader:
    describe: Callable[..., Any]
    load: Callable[..., Any]
    media: Callable[..., Any]
    check: Callable[[str], list[str]]
    identity: Callable[[str], str]
    example: str


# prefix -> module that registers it (imported on first use: timm/open_clip import torchvision)
_MODULES = {
    "timm": "scaling.models.encoders.timm_loader",
    "open_clip": "scaling.models.encoders.open_clip_loader",
    "mavil": "scaling.models.encoders.mavil_loader",
}
ENCODER_LOADERS: dict[str, EncoderLoader] = {}


def split_encoder_name(name: str) -> tuple[str | None, str]:
    """``"timm:NAME@PATH"`` → ``("timm", "NAME@PATH")``; names without a registered prefix → ``(None, name)``."""
    prefix, sep, ref = name.partition(":")
    if sep and prefix in _MODULES:
        return prefix, ref
    return None, name


def loader_for(prefix: str) -> EncoderLoader:
    if prefix not in ENCODER_LOADERS:
        try:
            importlib.import_module(_MODULES[prefix])
        except ImportError as err:
            raise ConfigError(f"model.encoder={prefix}:...: cannot import the {prefix} library ({err}); "
                              f"install it (pip install timm open_clip_torch)") from None
    return ENCODER_LOADERS[prefix]


def register(prefix: str, loader: EncoderLoader) -> None:
    ENCODER_LOADERS[prefix] = loader
