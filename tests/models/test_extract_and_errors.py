"""Extraction of encoder levels, and clear errors for bad input."""

import json

import pytest
import torch

from scaling.config import load_config
from scaling.config.base import ConfigError
from scaling.config.model import model_config
from scaling.models.backbones import load_encoder
from scaling.models.builder import build_model
from scaling.models.extract import FeatureExtractor
from scaling.models.tiny import tiny_media


@pytest.mark.parametrize("arch", ["vit", "clip", "dinov2", "siglip", "timesformer", "ast"])
def test_extraction_returns_the_last_levels_of_the_encoder(backbones, arch):
    enc = load_encoder(backbones[arch], "fp32")
    media = next(iter(tiny_media(arch).values()))
    ex = FeatureExtractor(enc, n_levels=2, tokens="all", norm="none")
    feats = ex(media)
    key = {"timesformer": "pixel_values", "ast": "input_values"}.get(arch, "pixel_values")
    hidden = enc.model(**{key: media}, output_hidden_states=True).hidden_states
    info = enc.info
    assert feats.shape == (2, 2, info.n_patches + int(info.has_cls), info.hidden_size)
    for j, level in enumerate((-2, -1)):
        h = hidden[level]
        expected = torch.cat([h[:, :1], h[:, info.n_special:]], 1) if info.has_cls else h
        assert torch.allclose(feats[:, j], expected, atol=1e-6)
    cls = FeatureExtractor(enc, n_levels=1, tokens="cls", norm="none")(media)
    assert cls.shape == (2, 1, 1, info.hidden_size)
    if not info.has_cls:  # SigLIP: the mean of the patch tokens stands in for CLS
        assert torch.allclose(cls[:, 0, 0], hidden[-1].mean(1), atol=1e-6)


def test_any_list_of_layers(backbones):
    enc = load_encoder(backbones["vit"], "fp32")
    ex = FeatureExtractor(enc, tokens="cls", layers=[0, 2])
    feats = ex(tiny_media("vit")["pixel_values"])
    assert feats.shape[1] == 2


def test_image_encoder_per_frame_averages_cls_over_time(backbones):
    enc = load_encoder(backbones["vit"], "fp32", video_frames=3)
    assert enc.info.modality == "video" and enc.info.grid == (3, 4, 4)
    video = torch.randn(2, 3, 3, 32, 32)
    feats = FeatureExtractor(enc, tokens="cls", norm="none")(video)
    per_frame = enc.model(pixel_values=video.flatten(0, 1), output_hidden_states=True).hidden_states[-1][:, 0]
    assert torch.allclose(feats[:, 0, 0], per_frame.view(2, 3, -1).mean(1), atol=1e-6)
    # with the final norm: each frame's output is normalised, then averaged (the encoder's per-image output)
    normed = FeatureExtractor(enc, tokens="cls", norm="auto")(video)
    per_frame = enc.model(pixel_values=video.flatten(0, 1)).last_hidden_state[:, 0]  # ViT: after its layernorm
    assert torch.allclose(normed[:, 0, 0], per_frame.view(2, 3, -1).mean(1), atol=1e-5)


# The official extractors (DePALM extractors.py, feat_model.norm: auto; eP-ALM's encoders) pass every
# extracted level through the encoder's final norm. Reference per encoder, written from that description:
# the final norm module by its Hugging Face name, applied to every token of every level.
_FINAL_NORM = {"vit": "layernorm", "clip": "post_layernorm", "dinov2": "layernorm", "siglip": "post_layernorm",
               "timesformer": "layernorm", "ast": "layernorm"}


@pytest.mark.parametrize("arch", sorted(_FINAL_NORM))
def test_extract_norm_auto_applies_the_final_norm_to_every_level(backbones, arch):
    enc = load_encoder(backbones[arch], "fp32")
    media = next(iter(tiny_media(arch).values()))
    key = {"ast": "input_values"}.get(arch, "pixel_values")
    out = enc.model(**{key: media}, output_hidden_states=True)
    norm = enc.model.get_submodule(_FINAL_NORM[arch])
    info = enc.info
    feats = FeatureExtractor(enc, n_levels=3, tokens="all")(media)  # default: auto
    assert torch.equal(feats, FeatureExtractor(enc, n_levels=3, tokens="all", norm="final")(media))
    for j, level in enumerate((-3, -2, -1)):
        h = norm(out.hidden_states[level])
        expected = torch.cat([h[:, :1], h[:, info.n_special:]], 1) if info.has_cls else h
        torch.testing.assert_close(feats[:, j], expected, atol=1e-5, rtol=0)
    # the last level is what the encoder itself outputs after its final norm
    if arch == "clip":  # HF CLIP: last_hidden_state is before post_layernorm; pooler_output = post_layernorm([CLS])
        torch.testing.assert_close(feats[:, -1, 0], out.pooler_output, atol=1e-5, rtol=0)
    else:
        torch.testing.assert_close(feats[:, -1, 0], out.last_hidden_state[:, 0], atol=1e-5, rtol=0)
    raw = FeatureExtractor(enc, n_levels=3, tokens="all", norm="none")(media)
    assert not torch.allclose(raw, feats, atol=1e-2)


def test_extract_norm_registry_defaults_and_errors():
    from scaling.models.final_norm import FINAL_NORMS, resolve_norm

    for encoder_type in ("clip", "vit", "dinov2", "siglip", "timesformer", "audio-spectrogram-transformer"):
        assert resolve_norm("auto", encoder_type) is True and resolve_norm("none", encoder_type) is False
    with pytest.raises(ConfigError, match="no final-norm entry .*model.extract.norm=none"):
        resolve_norm("auto", "unknown-encoder")
    assert resolve_norm("none", "unknown-encoder") is False
    with pytest.raises(ConfigError, match="auto.*final.*none"):
        resolve_norm("layernorm", "vit")
    with pytest.raises(ConfigError, match="model.extract.norm"):
        load_config(None, ["model.extract.norm=layernorm"])
    assert all(e.paths and e.source for e in FINAL_NORMS.values())


def test_unknown_method_and_blocks_list_the_valid_ones():
    with pytest.raises(ConfigError, match="valid: .*depalm"):
        load_config(None, ["model.method=dpalm"])
    with pytest.raises(ConfigError, match="unknown mapper .*valid"):
        load_config(None, ["model.map.name=qformer"])
    with pytest.raises(ConfigError, match="unknown injection .*valid"):
        load_config(None, ["model.inject.name=middle"])


def test_missing_and_unsupported_backbones(tmp_path, backbones):
    with pytest.raises(ConfigError, match="does not exist"):
        build_model(model_config(method="depalm", llm=str(tmp_path / "nope"), encoder="tiny-vit"))
    # a directory with an architecture we do not support as encoder
    bad = tmp_path / "bert"
    bad.mkdir()
    (bad / "config.json").write_text(json.dumps({"model_type": "bert"}))
    with pytest.raises(ConfigError, match="unsupported encoder type 'bert'; supported"):
        build_model(model_config(method="depalm", llm=backbones["llama"], encoder=str(bad)))
    # an encoder directory given as the LLM
    with pytest.raises(ConfigError, match="not a causal LM"):
        build_model(model_config(method="depalm", llm=backbones["vit"], encoder=backbones["vit"]))


def test_modality_mismatch_is_a_clear_error(backbones):
    model = build_model(model_config(method="depalm", llm=backbones["llama"], encoder=backbones["vit"], frozen_dtype="fp32", map={"d_embed": 32}))
    ids = torch.randint(5, 90, (2, 4))
    with pytest.raises(ValueError, match="modality mismatch: the encoder .* reads image but the batch holds audio"):
        model(input_ids=ids, audio=torch.randn(2, 64, 32))
    with pytest.raises(ValueError, match="no media given"):
        model(input_ids=ids)
    with pytest.raises(ValueError, match="cached features have shape"):
        model(input_ids=ids, features=torch.randn(2, 1, 5, 32))


def test_trust_remote_code_is_off_by_default():
    assert load_config(None, []).model.trust_remote_code is False


@pytest.mark.parametrize("arch", ["opt", "gpt2"])
def test_a_sequence_longer_than_the_position_table_is_refused(tmp_path, backbones, arch):
    """OPT/GPT-2 have learned positions: past the table they would index out of range (a device assert on GPU)."""
    from scaling.models.tiny import save_tiny_llm

    key = "n_positions" if arch == "gpt2" else "max_position_embeddings"
    llm = save_tiny_llm(str(tmp_path / arch), arch, **{key: 24})
    model = build_model(model_config(method="limber-1", llm=llm, encoder=backbones["vit"], frozen_dtype="fp32"))
    assert model.max_positions == 24
    media = tiny_media("vit")
    n_prefix = 1  # limber-1: the [CLS] token of the last layer, no prompt token
    fits = torch.randint(5, 60, (2, 24 - n_prefix))
    assert torch.isfinite(model(input_ids=fits, labels=fits, **media)["loss"])
    too_long = torch.randint(5, 60, (2, 25 - n_prefix))
    with pytest.raises(ValueError, match=rf"needs 25 positions \({n_prefix} perceptual/prompt tokens .* max_position_embeddings=24.*data.max_text_len"):
        model(input_ids=too_long, labels=too_long, **media)
    with pytest.raises(ValueError, match=r"\+ 3 generated.*eval.max_new_tokens"):
        model.generate(fits[:, :-2], max_new_tokens=3, **media)


@pytest.mark.slow
def test_compile_encoder_gives_the_same_features_and_skips_tuned_encoders(backbones):
    """model.compile_encoder: torch.compile of the frozen encoder (inductor, ~25 s on CPU)."""
    def build(**kw):
        torch.manual_seed(0)
        return build_model(model_config(method="depalm", llm=backbones["llama"], encoder=backbones["vit"],
                                        frozen_dtype="fp32", **kw))

    plain, compiled = build(), build(compile_encoder=True)
    assert getattr(compiled.extractor.encoder.model, "_scaling_compiled", False)
    assert not getattr(plain.extractor.encoder.model, "_scaling_compiled", False)
    pixels = tiny_media("vit")["pixel_values"]
    with torch.no_grad():
        torch.testing.assert_close(compiled.extractor(pixels), plain.extractor(pixels), rtol=1e-5, atol=1e-5)
    tuned = build(compile_encoder=True, finetune={"bias_tuning": "encoder"})
    assert not getattr(tuned.extractor.encoder.model, "_scaling_compiled", False)


def test_an_llm_whose_embedding_width_differs_from_its_hidden_size_is_refused_with_the_reason(tmp_path, backbones):
    """OPT-350m (word_embed_proj_dim 512, hidden 1024): refused at build time, not a shape error mid-forward."""
    from transformers import OPTConfig, OPTForCausalLM

    path = tmp_path / "opt-proj"
    OPTForCausalLM(OPTConfig(hidden_size=64, word_embed_proj_dim=32, ffn_dim=128, num_hidden_layers=2,
                             num_attention_heads=4, vocab_size=100, max_position_embeddings=64)).save_pretrained(path)
    with pytest.raises(ConfigError, match=r"embeds tokens at width 32 and runs its layers at 64.*word_embed_proj_dim"):
        build_model(model_config(method="limber-1", llm=str(path), encoder=backbones["vit"], frozen_dtype="fp32"))


def test_timesformer_reads_model_video_frames_with_its_time_embeddings_resized_nearest(backbones):
    """DePALM's TimeSformer reads config/dataset/msrvtt.yaml's 16 frames with a K400 checkpoint of 8: its time
    embeddings are resized to the frames given by nearest interpolation. Here: a tiny checkpoint of 4, read with 8."""
    base = load_encoder(backbones["timesformer"], "fp32")
    t0 = base.info.num_frames
    enc = load_encoder(backbones["timesformer"], "fp32", video_frames=2 * t0)
    info = enc.info
    assert info.num_frames == 2 * t0 and info.grid[-1] == 2 * t0  # the token grid has 2 * t0 time steps
    old = base.model.embeddings.time_embeddings  # [1, t0, d]
    nearest = old[:, [i * t0 // (2 * t0) for i in range(2 * t0)]]  # nearest: output step i reads floor(i * t0 / T)
    torch.testing.assert_close(enc.model.embeddings.time_embeddings, nearest, rtol=0, atol=0)
    video = torch.randn(2, 2 * t0, 3, info.image_size, info.image_size)
    feats = FeatureExtractor(enc, n_levels=1, tokens="all", norm="none")(video)
    assert feats.shape == (2, 1, 1 + info.grid[0] * info.grid[1] * 2 * t0, info.hidden_size)
    cfg = model_config(method="depalm", llm=backbones["llama"], encoder=backbones["timesformer"], frozen_dtype="fp32",
                       map={"d_embed": 32}, video_frames=2 * t0)
    from scaling.models.transforms import media_spec

    assert media_spec(cfg).frames == 2 * t0  # the data side samples that many
