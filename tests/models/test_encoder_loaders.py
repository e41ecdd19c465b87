"""Encoders of other libraries (timm, open_clip, MAViL): tiny random models saved as users get them,
loaded through ``model.encoder=PREFIX:...``; one extraction contract; their preprocessing; errors."""

from __future__ import annotations

import os

import pytest
import torch

from scaling.config.base import ConfigError
from scaling.config.model import model_config
from scaling.models.backbones import describe_encoder, load_encoder
from scaling.models.builder import build_model
from scaling.models.extract import FeatureExtractor
from scaling.models.final_norm import final_norm_module
from scaling.models.tiny import save_tiny_mavil, save_tiny_open_clip, save_tiny_timm


def _save_test_vit(path) -> str:
    """timm's own tiny ``test_vit`` (0.4M parameters, with its classifier head) as a bare safetensors file."""
    import timm
    from safetensors.torch import save_file

    save_file(timm.create_model("test_vit", pretrained=False).state_dict(), str(path))
    return str(path)


@pytest.fixture(scope="module")
def encs(tmp_path_factory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("lib_encoders")
    timm_dir = save_tiny_timm(str(root / "eva"))
    return {
        "timm": f"timm:{timm_dir}",
        "timm_file": f"timm:test_vit@{_save_test_vit(root / 'test_vit.safetensors')}",
        "timm_vit": "timm:" + save_tiny_timm(str(root / "vit"), "vit_base_patch16_224.augreg_in21k", reg_tokens=2),
        "open_clip": "open_clip:" + save_tiny_open_clip(str(root / "oc")),
        "mavil": "mavil:" + save_tiny_mavil(str(root / "mavil.safetensors")),
        "root": str(root),
    }


def test_timm_levels_are_block_outputs_before_the_final_norm(encs):
    for key, side, grid, depth, d in (("timm", 32, 4, 3, 32), ("timm_file", 160, 10, 6, 64)):
        enc = load_encoder(encs[key], "fp32")
        info = enc.info
        assert (info.grid, info.n_layers, info.hidden_size, info.has_cls, info.n_special) == ((grid, grid), depth, d, True, 1)
        x = torch.randn(2, 3, side, side)
        states = enc(x, [-3, -1])  # [B, L, 1 + grid², d]
        assert states.shape == (2, 2, 1 + grid * grid, d)
        # the last level, through timm's own final norm, is timm's forward_features
        torch.testing.assert_close(final_norm_module(enc.model, enc.info.encoder_type)(states[:, 1]), enc.model.forward_features(x))
        assert not torch.allclose(states[:, 0], states[:, 1])
    ex = FeatureExtractor(load_encoder(encs["timm"], "fp32"), n_levels=2, tokens="cls")
    assert ex(torch.randn(2, 3, 32, 32)).shape == (2, 2, 1, 32)


def test_timm_register_tokens_are_special_tokens(encs):
    enc = load_encoder(encs["timm_vit"], "fp32")
    assert enc.info.n_special == 3 and enc.info.has_cls  # CLS + 2 registers, dropped by tokens=all except the CLS
    ex = FeatureExtractor(enc, n_levels=1, tokens="all")
    assert ex(torch.randn(1, 3, 32, 32)).shape == (1, 1, 1 + 16, 32)


def test_open_clip_visual_tower_levels(encs):
    enc = load_encoder(encs["open_clip"], "fp32")
    assert enc.info.grid == (4, 4) and enc.info.n_layers == 3
    x = torch.randn(2, 3, 32, 32)
    states = enc(x, [-2, -1])
    assert states.shape == (2, 2, 17, 32)
    # open_clip's image embedding = ln_post(CLS of the last level) @ proj
    torch.testing.assert_close(final_norm_module(enc.model, enc.info.encoder_type)(states[:, 1, 0]) @ enc.model.proj, enc.model(x))


def test_mavil_levels_grid_and_b1_cls_mean(encs):
    enc = load_encoder(encs["mavil"], "fp32")
    info = enc.info
    assert (info.modality, info.grid, info.n_layers, info.max_length, info.num_mel_bins) == ("audio", (4, 8), 3, 64, 128)
    fbank = torch.randn(2, 64, 128)
    states = enc(fbank, [-1])
    assert states.shape == (2, 1, 33, 64)
    torch.testing.assert_close(final_norm_module(enc.model, enc.info.encoder_type)(states[:, 0]), enc.model(fbank))
    cls = FeatureExtractor(enc, n_levels=2, tokens="cls")(fbank)  # B.1: CLS → mean of the level's patch tokens
    levels = enc(fbank, [-2, -1])
    torch.testing.assert_close(cls[:, :, 0], levels[:, :, 1:].mean(dim=2))
    assert not torch.allclose(cls[:, :, 0], levels[:, :, 0])


def test_mavil_full_checkpoint_keeps_the_audio_branch(encs, tmp_path):
    from safetensors.torch import load_file

    sd = load_file(encs["mavil"].split(":", 1)[1])
    torch.save({"model": {**sd, "blocks_v.0.norm1.weight": torch.ones(4), "decoder_embed.weight": torch.ones(2, 2)}},
               tmp_path / "av.pth")
    a, b = load_encoder(encs["mavil"], "fp32"), load_encoder(f"mavil:{tmp_path / 'av.pth'}", "fp32")
    x = torch.randn(1, 64, 128)
    torch.testing.assert_close(a(x, [-1]), b(x, [-1]))


def test_preprocessing_follows_the_library(encs):
    from scaling.models.transforms import media_spec

    spec = media_spec(model_config(encoder=encs["timm"]))  # eva02 CLIP: OpenAI CLIP mean, bicubic, crop_pct 0.9
    assert spec.mean == pytest.approx((0.48145466, 0.4578275, 0.40821073)) and spec.resample == 3
    assert spec.resize == "shortest_edge" and round(spec.image_size * spec.resize_ratio) == 35  # floor(32 / 0.9)
    assert spec.preprocess.startswith("timm.resolve_data_config")
    spec = media_spec(model_config(encoder=encs["timm_vit"]))  # augreg ViT: 0.5 mean/std, bilinear? (timm's cfg)
    import timm

    want = timm.data.resolve_data_config({}, model=timm.create_model("vit_base_patch16_224.augreg_in21k", pretrained=False,
                                                                       img_size=32, patch_size=8, embed_dim=32, depth=1, num_heads=4))
    assert spec.mean == pytest.approx(want["mean"]) and spec.std == pytest.approx(want["std"])
    spec = media_spec(model_config(encoder=encs["open_clip"]))
    assert spec.image_size == 32 and spec.resize_ratio == 1.0 and spec.preprocess.startswith("open_clip")
    spec = media_spec(model_config(encoder=encs["mavil"]))
    assert (spec.modality, spec.num_mel_bins, spec.max_length) == ("audio", 128, 64)
    assert spec.audio_mean == pytest.approx(-4.2677393) and spec.audio_std == pytest.approx(4.5689974)


def test_meta_counts_at_real_shape_without_weights():
    # EVA02-CLIP-L/14 visual: 303.3M parameters, counted on the meta device with no file
    enc = load_encoder("timm:eva02_large_patch14_clip_224", meta=True)
    assert sum(p.numel() for p in enc.parameters()) == 303_317_952 and enc.info.grid == (16, 16)
    assert all(p.is_meta for p in enc.parameters())
    info = describe_encoder("open_clip:ViT-L-14")
    assert (info.hidden_size, info.n_layers, info.grid) == (1024, 24, (16, 16))
    mavil = load_encoder("mavil:base", meta=True)
    assert mavil.info.grid == (64, 8) and mavil.info.n_patches == 512 and mavil.info.hidden_size == 768


def test_methods_cli_counts_a_timm_encoder(capsys, monkeypatch):
    import json

    monkeypatch.setenv("SCALING_NO_PARAM_CACHE", "1")  # count by building, not from an earlier run's cache
    from scaling.cli.main import main

    counts = {}
    for enc in ("timm:eva02_large_patch14_clip_224", "clip-vit-l14"):
        assert main(["methods", "--show", "depalm", "--llm", "opt-6.7b", "--encoder", enc, "--json"]) == 0
        counts[enc] = json.loads(capsys.readouterr().out)
    eva, clip = counts.values()
    assert eva["parameters"]["encoder"] == {"trainable": 0, "frozen": 303_317_952}
    # same width (1024) and tokens (1 + 16x16) as CLIP-L/14: DePALM's interface has the same size
    assert eva["trainable_parameters"] == clip["trainable_parameters"] > 0


def test_errors_before_training(encs, tmp_path):
    with pytest.raises(ConfigError, match=r"closest names: \['eva02_large_patch14_clip_336'"):
        describe_encoder("timm:eva02_large_patch14_clip")
    with pytest.raises(ConfigError, match="closest names:.*ViT-L-14"):
        describe_encoder("open_clip:ViT-L-15")
    with pytest.raises(ConfigError, match="does not exist"):
        load_encoder(f"timm:eva02_large_patch14_clip_224@{tmp_path}/nope.safetensors")
    with pytest.raises(ConfigError, match="does not exist"):
        load_encoder(f"mavil:{tmp_path}/nope.pth")
    with pytest.raises(ConfigError, match="names no weights"):
        load_encoder("timm:eva02_large_patch14_clip_224")
    # tiny weights under the real architecture: missing keys and shape mismatches, listed
    with pytest.raises(ConfigError, match="missing keys: blocks.10.*shape mismatches"):
        load_encoder(f"timm:eva02_large_patch14_clip_224@{encs['root']}/eva/model.safetensors")
    # a partial match is refused: one key missing, one unexpected
    from safetensors.torch import load_file, save_file

    sd = load_file(encs["mavil"].split(":", 1)[1])
    del sd["fc_norm_a.bias"]
    save_file({**sd, "blocks_a.0.extra": torch.zeros(1)}, str(tmp_path / "partial.safetensors"))
    with pytest.raises(ConfigError, match=r"missing keys: fc_norm_a.bias; unexpected keys: blocks_a.0.extra"):
        load_encoder(f"mavil:{tmp_path / 'partial.safetensors'}")
    sd = load_file(f"{encs['root']}/oc/open_clip_model.safetensors")
    sd = {k: v for k, v in sd.items() if k != "visual.ln_post.weight"}
    os.makedirs(tmp_path / "oc", exist_ok=True)
    save_file(sd, str(tmp_path / "oc" / "w.safetensors"))
    with pytest.raises(ConfigError, match="missing keys: ln_post.weight"):
        load_encoder(f"open_clip:ViT-B-32@{tmp_path / 'oc' / 'w.safetensors'}")
    # the run's validation reports the missing file before anything loads
    from scaling.training.validate import check_backbone

    assert "does not exist" in check_backbone(f"timm:vit_base_patch16_224@{tmp_path}/x.safetensors", "encoder")[0]
    assert check_backbone(encs["timm"], "encoder") == []


def test_fingerprints_tell_timm_checkpoints_apart(encs, backbones, tmp_path):
    from scaling.training.fingerprint import compare, model_fingerprints

    other = "timm:" + save_tiny_timm(str(tmp_path / "eva_seed1"), seed=1)
    fps = [model_fingerprints(build_model(model_config(method="depalm", llm=backbones["llama"], encoder=e, frozen_dtype="fp32",
                                                       map={"d_embed": 32}))) for e in (encs["timm"], encs["timm"], other)]
    assert "timm:eva02_large_patch14_clip_224" in fps[0]["encoder"]["architecture"]
    assert fps[0]["encoder"]["dims"]["hidden_size"] == 32
    assert compare(fps[0], fps[1]) == []
    assert any("encoder weights differ" in d for d in compare(fps[0], fps[2]))


def test_final_norm_defaults_follow_the_official_configs(encs):
    # EVA-CLIP and MAViL: raw levels by default (norm: null); other timm models and open_clip: their final norm
    expected = {"timm": False, "timm_vit": True, "open_clip": True, "mavil": False}
    for key, normed in expected.items():
        enc = load_encoder(encs[key], "fp32")
        media = torch.randn(1, 64, 128) if key == "mavil" else torch.randn(1, 3, 32, 32)
        raw = enc(media, [-1])
        auto = FeatureExtractor(enc, n_levels=1, tokens="all", norm="auto")(media)
        final = FeatureExtractor(enc, n_levels=1, tokens="all", norm="final")(media)
        norm = final_norm_module(enc.model, enc.info.encoder_type)
        n_special = enc.info.n_special
        want_final = torch.cat([norm(raw)[:, :, :1], norm(raw)[:, :, n_special:]], dim=2)
        torch.testing.assert_close(final, want_final)
        torch.testing.assert_close(auto, final if normed else torch.cat([raw[:, :, :1], raw[:, :, n_special:]], dim=2))


def test_videomae_tubelet_grid_levels(backbones):
    enc = load_encoder(backbones["videomae"], "fp32")
    info = enc.info
    assert (info.modality, info.grid, info.block, info.has_cls, info.n_special) == ("video", (2, 4, 4), (1, 2, 2), False, 0)
    video = torch.randn(2, 4, 3, 32, 32)
    feats = FeatureExtractor(enc, n_levels=2, tokens="all", norm="auto")(video)  # auto: no final norm (mean pooling)
    hidden = enc.model(pixel_values=video, output_hidden_states=True).hidden_states
    torch.testing.assert_close(feats, torch.stack([hidden[-2], hidden[-1]], 1))
    cls = FeatureExtractor(enc, n_levels=1, tokens="cls", norm="none")(video)  # no CLS: the patch mean
    torch.testing.assert_close(cls[:, 0, 0], hidden[-1].mean(1))


def test_whisper_encoder_levels_are_raw_layer_outputs(backbones):
    enc = load_encoder(backbones["whisper"], "fp32")
    info = enc.info
    assert (info.modality, info.grid, info.n_layers, info.num_mel_bins, info.max_length) == ("audio", (50,), 3, 16, 100)
    assert not hasattr(enc.model, "decoder") and type(enc.model).__name__ == "WhisperEncoder"
    mel = torch.randn(2, 100, 16)  # [B, frames, mel] as the data pipeline gives it
    raw = FeatureExtractor(enc, n_levels=2, tokens="all", norm="none")(mel)
    out = enc.model(input_features=mel.transpose(1, 2), output_hidden_states=True)
    torch.testing.assert_close(raw[:, 0], out.hidden_states[-2])
    # Whisper's own output is layer_norm(last layer): the default (auto) extraction reproduces it
    torch.testing.assert_close(FeatureExtractor(enc, n_levels=1, norm="auto")(mel)[:, 0], out.last_hidden_state)
    assert not torch.allclose(raw[:, 1], out.last_hidden_state)


def test_whisper_preprocessing_is_its_feature_extractor(backbones, tmp_path):
    import numpy as np
    from transformers import WhisperFeatureExtractor

    from scaling.data.audio import encode_flac
    from scaling.data.decode import SampleDecoder
    from scaling.models.transforms import media_spec

    spec = media_spec(model_config(encoder=backbones["whisper"]))
    assert (spec.audio_features, spec.num_mel_bins, spec.max_length) == ("whisper", 16, 100)
    wav = (0.3 * np.sin(np.arange(8000) * 2 * np.pi * 440 / 16000)).astype(np.float32)
    flac = encode_flac(wav)
    sample = SampleDecoder(spec, False, "caption")({"__key__": "k", "flac": flac, "json": b'{"id": "k", "captions": ["a tone"]}'},
                                                   __import__("random").Random(0))
    from scaling.data.audio import decode_audio

    want = WhisperFeatureExtractor(feature_size=16, chunk_length=1)(decode_audio(flac), sampling_rate=16000,
                                                                     return_tensors="np").input_features[0].T
    assert sample["media"].shape == (100, 16)
    torch.testing.assert_close(sample["media"], torch.from_numpy(np.ascontiguousarray(want)).float())


def test_clap_audio_levels_are_its_last_stage_blocks(backbones):
    enc = load_encoder(backbones["clap"], "fp32")
    info = enc.info
    assert (info.modality, info.grid, info.n_layers, info.hidden_size, info.has_cls) == ("audio", (32, 32), 2, 32, False)
    mel = torch.randn(2, 1001, 64)
    feats = FeatureExtractor(enc, n_levels=2, tokens="all", norm="none")(mel)
    assert feats.shape == (2, 2, 1024, 32)
    out = enc.model(input_features=mel.unsqueeze(1), output_hidden_states=True)
    # the last stage's output (HF's last hidden state, [B, d, h, w]) is the last level
    torch.testing.assert_close(feats[:, 1], out.hidden_states[-1].flatten(2).transpose(1, 2))
    assert not torch.allclose(feats[:, 0], feats[:, 1])


def test_clap_preprocessing_is_its_feature_extractor(backbones):
    import random

    import numpy as np
    from transformers import ClapFeatureExtractor

    from scaling.models.encoders.hf_clap import clap_features
    from scaling.models.transforms import media_spec

    spec = media_spec(model_config(encoder=backbones["clap"]))
    assert (spec.audio_features, spec.sample_rate, spec.num_mel_bins, spec.max_length) == ("clap", 48000, 64, 1001)
    wav = (0.3 * np.sin(np.arange(48000 * 2) * 2 * np.pi * 440 / 48000)).astype(np.float32)
    want = ClapFeatureExtractor(truncation="rand_trunc", padding="repeatpad")(wav, sampling_rate=48000, return_tensors="np")
    torch.testing.assert_close(clap_features(wav), torch.from_numpy(want.input_features[0, 0]).float())
    long = np.random.default_rng(0).standard_normal(48000 * 12).astype(np.float32)  # > 10 s: cut by our rng, not numpy's
    a, b = clap_features(long, rng=random.Random(1)), clap_features(long, rng=random.Random(1))
    assert a.shape == (1001, 64) and torch.equal(a, b)


def test_timm_encoder_per_frame_on_video(encs):
    enc = load_encoder(encs["timm"], "fp32", video_frames=3)
    assert (enc.info.modality, enc.info.grid, enc.info.block) == ("video", (3, 4, 4), (1, 2, 2))
    assert describe_encoder(encs["timm"], video_frames=3).grid == (3, 4, 4)
    video = torch.randn(2, 3, 3, 32, 32)
    feats = FeatureExtractor(enc, n_levels=1, tokens="all", norm="none")(video)
    assert feats.shape == (2, 1, 1 + 3 * 16, 32)
    per_frame = enc.model.forward_intermediates(video.flatten(0, 1), indices=[2], return_prefix_tokens=True, output_fmt="NLC",
                                                intermediates_only=True)[0]
    torch.testing.assert_close(feats[:, 0, 0], per_frame[1][:, 0].view(2, 3, -1).mean(1))  # CLS averaged over frames


def test_every_encoder_is_a_registered_loader_with_all_its_parts():
    """Each module of the registry declares its final norms, names, tiny builder; every transformers model
    type it reads is described by it (adding an encoder = its module + a registry line)."""
    from scaling.models.encoders.registry import MODEL_TYPES, PREFIXES, all_loaders, encoders_by_modality, loader_for
    from scaling.models.final_norm import FINAL_NORMS
    from scaling.models.shapes import ENCODER_SHAPES
    from scaling.models.tiny import TINY_ENCODER_ARCHS

    for key in [*MODEL_TYPES, *PREFIXES]:
        loader = loader_for(key)
        assert loader.names and loader.final_norms and loader.tiny is not None, key
    for model_type in MODEL_TYPES:
        assert model_type in loader_for(model_type).final_norms
    assert {"timm", "timm-eva-clip", "open_clip", "mavil", "clip", "whisper", "clap_audio_model"} <= set(FINAL_NORMS)
    assert TINY_ENCODER_ARCHS == ["vit", "clip", "dinov2", "siglip", "timesformer", "ast", "videomae", "whisper", "clap"]
    assert {"clip-vit-l14", "timesformer-b", "ast-b", "clap-htsat", "whisper-base", "videomae-b"} <= set(ENCODER_SHAPES)
    assert len(all_loaders()) == 9  # hf_vit, hf_timesformer, hf_ast, hf_videomae, hf_whisper, hf_clap, timm, open_clip, mavil
    by = encoders_by_modality()
    assert by["audio"] == ["AST", "Whisper", "CLAP", "MAViL"] and by["video"] == ["TimeSformer", "VideoMAE"]
    with pytest.raises(ConfigError, match="unsupported encoder type 'bert'"):
        loader_for("bert")


def test_family_options_reach_the_module(monkeypatch):
    """``load_encoder(..., **options)`` / ``describe_encoder`` hand family-specific settings to the module's
    ``info`` and ``wrap`` (where, e.g., a TimeSformer frame count or a CLAP extraction mode would be read)."""
    import dataclasses

    from scaling.models.encoders import hf, hf_timesformer

    seen = []
    entry = hf.HF_ENCODERS["timesformer"]

    def info(cfg, **options):
        seen.append(("info", options))
        return hf_timesformer.info(cfg)

    def wrap(model, info, **options):
        seen.append(("wrap", options))
        return hf.plain(model, info)

    monkeypatch.setitem(hf.HF_ENCODERS, "timesformer", dataclasses.replace(entry, info=info, wrap=wrap))
    describe_encoder("tiny-timesformer", frames_mode="resize")
    load_encoder("tiny-timesformer", "fp32", meta=True, frames_mode="resize")
    assert [k for k, _ in seen] == ["info", "info", "wrap"]
    assert all(o.get("frames_mode") == "resize" for _, o in seen) and seen[-1][1]["video_frames"] is None


def test_feature_cache_signatures_keep_their_values(encs, backbones):
    """Caches written before the encoder registry record these values; they must still be accepted."""
    from scaling.config import load_config
    from scaling.data.features import feature_signature
    from scaling.models.transforms import encoder_inputs

    def sig(encoder, *extra):
        cfg = load_config(None, [f"model.encoder={encoder}", *extra])
        return feature_signature(cfg.model, encoder_inputs(cfg.model, cfg.data))

    base = {"layers": None, "n_levels": 1, "tokens": "all", "video_frames": None}
    assert sig(backbones["vit"]) == {**base, "encoder": "vit", "norm": "final"}
    assert sig(backbones["clap"]) == {**base, "encoder": "clap", "norm": "none"}
    assert sig(backbones["videomae"], "model.extract.norm=final") == {**base, "encoder": "videomae", "norm": "final"}
    assert sig("tiny-siglip", "model.video_frames=3") == {**base, "encoder": "tiny-siglip", "norm": "final", "video_frames": 3}
    assert sig(encs["timm"]) == {**base, "encoder": "timm:@eva", "norm": "none"}
    assert sig(encs["open_clip"]) == {**base, "encoder": "open_clip:@oc", "norm": "final"}
    assert sig(encs["mavil"], "model.extract.norm=none") == {**base, "encoder": "mavil:mavil.safetensors", "norm": "none"}

