"""End to end on encoders of other libraries: train → predict → convert on a timm encoder; cache features →
train from them → predict on MAViL. Tiny random models saved as users get them; nothing downloaded."""

from __future__ import annotations

import json
import os

from scaling.cli.main import main
from scaling.data.synthetic import write_shards
from scaling.models.tiny import save_tiny_mavil, save_tiny_timm


def _common(backbones, run, train, test) -> list[str]:
    return [
        "model.method=depalm", f"model.llm={backbones['llama']}", "model.frozen_dtype=fp32", "model.map.d_embed=32",
        "model.map.n_queries=4", f"data.train={train}", f"data.test={test}", "data.task=caption", "data.num_workers=0",
        f"train.output_dir={run}", "train.max_steps=3", "train.global_batch=4", "train.micro_batch=4",
        "train.precision=fp32", "train.save_every=3", "train.log_every=1", "eval.batch_size=4",
    ]


def _fingerprint_arch(run) -> str:
    from scaling.training.checkpoint import load_adapter

    model, cfg = load_adapter(str(run), "cpu")
    from scaling.training.fingerprint import model_fingerprints

    return model_fingerprints(model)["encoder"]["architecture"]


def test_train_predict_convert_on_a_timm_encoder(backbones, tmp_path, capsys):
    enc = "timm:" + save_tiny_timm(str(tmp_path / "eva"))
    write_shards(str(tmp_path / "shards"), [8], split="train", image_size=40)
    write_shards(str(tmp_path / "shards"), [4], split="test", image_size=40, prefix="t")
    run = tmp_path / "run"
    assert main(["train", *_common(backbones, run, tmp_path / "shards", tmp_path / "shards"), f"model.encoder={enc}"]) == 0
    assert os.path.isfile(run / "train_summary.json")
    assert "timm:eva02_large_patch14_clip_224" in _fingerprint_arch(run)
    from PIL import Image

    Image.new("RGB", (40, 40), (200, 30, 30)).save(tmp_path / "red.png")
    capsys.readouterr()
    assert main(["predict", "--checkpoint", str(run), str(tmp_path / "red.png"), "--json", "--max-new-tokens", "3"]) == 0
    assert isinstance(json.loads(capsys.readouterr().out.strip().splitlines()[-1])["prediction"], str)
    assert main(["convert", str(run), "--to", "adapter", str(tmp_path / "adapter.safetensors")]) == 0
    assert os.path.isfile(tmp_path / "adapter.safetensors")


def test_cache_features_train_predict_on_mavil(backbones, tmp_path, capsys):
    enc = "mavil:" + save_tiny_mavil(str(tmp_path / "mavil.safetensors"))
    write_shards(str(tmp_path / "shards"), [8], split="train", modality="audio")
    write_shards(str(tmp_path / "shards"), [4], split="test", modality="audio", prefix="t")
    common = [*_common(backbones, tmp_path / "run", tmp_path / "shards", tmp_path / "shards"), f"model.encoder={enc}",
              "model.extract.n_levels=2"]
    feats = tmp_path / "features"
    (tmp_path / "cfg.yaml").write_text("model: {}\n")
    assert main(["data", "cache-features", "--config", str(tmp_path / "cfg.yaml"), "--out", str(feats), "--no-progress",
                 *common]) == 0
    entry = json.load(open(feats / "index.json"))["splits"]["train"]
    assert entry["features"]["encoder"] == "mavil:mavil.safetensors"
    assert entry["features"]["preprocess"].startswith("mavil.fbank") and entry["features"]["shape"] == [2, 33, 64]
    assert main(["train", *common, "data.use_features=true", f"data.features={feats}"]) == 0
    assert _fingerprint_arch(tmp_path / "run").startswith("MAViLAudioEncoder (mavil)")
    import random

    from scaling.data.audio import encode_flac
    from scaling.data.synthetic import make_tone

    wav, _ = make_tone(random.Random(0), 0.5)
    (tmp_path / "tone.flac").write_bytes(encode_flac(wav))
    capsys.readouterr()
    assert main(["predict", "--checkpoint", str(tmp_path / "run"), str(tmp_path / "tone.flac"), "--json",
                 "--max-new-tokens", "3"]) == 0
    assert isinstance(json.loads(capsys.readouterr().out.strip().splitlines()[-1])["prediction"], str)


def test_cache_features_and_fingerprints_with_every_other_loader(backbones, tmp_path):
    """open_clip, VideoMAE, Whisper and CLAP through cache-features (the shapes and the recorded
    preprocessing) and adapter fingerprints (architecture recorded, same weights = no difference)."""
    from scaling.config import load_config
    from scaling.data.features import cache_features
    from scaling.models.builder import build_model
    from scaling.models.tiny import save_tiny_open_clip
    from scaling.models.transforms import build_extractor
    from scaling.training.fingerprint import compare, model_fingerprints

    cases = {  # encoder, modality, expected [levels, tokens, dim], preprocess, architecture
        "open_clip": ("open_clip:" + save_tiny_open_clip(str(tmp_path / "oc")), "image", [2, 17, 32], "open_clip", "open_clip:oc"),
        "videomae": (backbones["videomae"], "video", [2, 32, 32], "transformers:videomae", "videomae"),
        "whisper": (backbones["whisper"], "audio", [2, 50, 32], "transformers:whisper", "whisper"),
        "clap": (backbones["clap"], "audio", [2, 1024, 32], "transformers:clap_audio_model", "clap_audio_model"),
    }
    for name, (enc, modality, shape, preprocess, arch) in cases.items():
        shards = tmp_path / f"shards_{name}"
        write_shards(str(shards), [2], split="train", modality=modality, image_size=40, video_frames=4)
        cfg = load_config(None, [f"model.encoder={enc}", f"model.llm={backbones['llama']}", "model.frozen_dtype=fp32",
                                 "model.extract.n_levels=2", f"data.train={shards}", "data.num_workers=0",
                                 "eval.batch_size=2", "data.video_frames=4"])
        summary = cache_features(cfg, str(tmp_path / f"feat_{name}"), *build_extractor(cfg.model, "cpu", cfg.data),
                                 progress=False, echo=lambda s: None)
        assert summary["train"]["num_samples"] == 2 and summary["train"]["shape"] == shape, name
        entry = json.load(open(tmp_path / f"feat_{name}" / "index.json"))["splits"]["train"]["features"]
        assert entry["preprocess"].startswith(preprocess), name
        fps = [model_fingerprints(build_model(cfg.model)) for _ in range(2)]
        assert arch in fps[0]["encoder"]["architecture"] and compare(fps[0], fps[1]) == [], name
