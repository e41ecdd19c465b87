"""Shared helpers of the planner tests."""

from __future__ import annotations

import pytest

from scaling.plan.profile import Profile


def profile(layers: int = 4, per_layer: float = 1e9, frozen: int = 7_000_000_000, trainable: int = 18_000_000) -> Profile:
    return Profile(
        llm="llama-7b", encoder="clip-vit-l14", notes=[], params={}, frozen_params=frozen, trainable_params=trainable,
        largest_layer_params=200_000_000, n_layers=layers, hidden=4096, vocab=32000, seq_len=97, prefix_len=33,
        text_len=64, n_targets=63, frozen_bytes=2, media_bytes=3 * 224 * 224 * 4, feature_bytes=0,
        backprop_layers=list(range(layers)), injection="first-layer",
        saved_layer={i: (per_layer / 8, 0.0) for i in range(layers)}, saved_interface=(1e6, 0.0), saved_head=(8e6, 0.0),
        encoder_peak=(5e6, 0.0), layer_input_bytes=97 * 4096 * 2, flops_total=(2.7e12, 0.0),
        flops_layer_fwd={i: (4e10, 0.0) for i in range(layers)}, flops_layer_recompute={i: (3e10, 0.0) for i in range(layers)},
    )


@pytest.fixture
def make_profile():
    """A hand-written LLaMA-7B-like profile (no model is built): ``make_profile(layers=, per_layer=, ...)``."""
    return profile
