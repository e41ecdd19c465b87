"""What the timm and open_clip loaders share: describe on the meta device, load local weights with an
exact key match (checked on the meta build before the real one), report missing weights, name the
weights for feature-cache signatures. A loader states its library's own steps in a :class:`LibraryArch`.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable

import torch
from torch import nn

from scaling.config.base import ConfigError
from scaling.models.encoders.base import per_frame_info
from scaling.models.encoders.checkpoint import check_keys, load_exact, read_state_dict
from scaling.models.encoders.common import freeze, need_weights, parse_ref


@dataclasses.dataclass(frozen=True)
class LibraryArch:
    """How one library builds a model from ``REF`` (``model.encoder=PREFIX:REF``)."""

    prefix: str
    example: str
    weights: Callable[[str], str | None]  # REF -> local weights file (None: REF names none); ConfigError on a bad REF
    meta_model: Callable[[str], nn.Module]  # REF -> the architecture on the meta device (cached by the loader)
    create: Callable[[str, str], nn.Module]  # (REF, device) -> the architecture with random weights
    info: Callable[[nn.Module], object]  # built model -> its EncoderInfo (before per-frame video)
    convert: Callable[[str, dict[str, torch.Tensor], nn.Module], dict[str, torch.Tensor]]  # the library's own key rules

    def what(self, ref: str) -> str:
        return f"model.encoder={self.prefix}:{ref}"

    def describe(self, ref: str, video_frames: int | None = None):
        return per_frame_info(self.info(self.meta_model(ref)), video_frames)

    def build(self, ref: str, dtype: str, device, meta: bool) -> nn.Module:
        """The frozen model: random on ``meta``, else the local weights loaded with an exact key match."""
        if meta:
            model = self.create(ref, "meta")
        else:
            path = self.weights(ref)
            if path is None:
                raise need_weights(self.prefix, ref, self.example)
            shape = self.meta_model(ref)
            sd = self.convert(ref, read_state_dict(path, self.what(ref)), shape)
            check_keys(shape, sd, self.what(ref), path)  # on meta tensors, before the real build
            model = self.create(ref, "cpu")
            load_exact(model, sd, self.what(ref), path)
        return freeze(model, dtype, "meta" if meta else device)

    def check(self, ref: str) -> list[str]:
        try:
            path = self.weights(ref)
        except ConfigError as err:
            return [str(err)]
        return [] if path else [str(need_weights(self.prefix, ref, self.example))]

    def identity(self, ref: str) -> str:
        name, path = parse_ref(ref)
        return f"{self.prefix}:{name or ''}@{os.path.basename(os.path.normpath(path)) if path else ''}"
