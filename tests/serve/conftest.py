"""Tiny trained adapters (DePALM, tiny LLaMA + a tiny encoder, 4 steps on synthetic captions) and their test media,
built once per test session: an image one (ViT, coloured squares) and, on demand, an audio one (AST, tones) and a
video one (TimeSformer, moving squares). The browser fixtures are in tests/conftest.py."""

from __future__ import annotations

import json

import pytest
from PIL import Image

COLOURS = {"red": (220, 30, 30), "green": (30, 200, 30), "blue": (30, 30, 220)}


def write_shards(root, n: int = 24, n_train: int = 18) -> str:
    """Coloured-square images with captions and a question each, as shards (``scaling data convert jsonl``)."""
    from scaling.cli.main import main

    media = root / "media"
    media.mkdir(parents=True, exist_ok=True)
    lines = []
    for i in range(n):
        name = list(COLOURS)[i % 3]
        img = Image.new("RGB", (32, 32), COLOURS[name])
        img.paste((255, 255, 255), (4 + i % 5, 4, 12 + i % 5, 12))  # no two images alike
        img.save(media / f"img{i}.png")
        split = "train" if i < n_train else "test"
        lines.append({"id": f"s{i}", "image": f"img{i}.png", "captions": [f"a {name} picture", f"{name} image"],
                      "split": split})
    ann = root / "data.jsonl"
    ann.write_text("\n".join(json.dumps(line) for line in lines))
    assert main(["data", "convert", "jsonl", "--annotations", str(ann), "--media", str(media),
                 "--out", str(root / "shards" / "{split}-%06d.tar")]) == 0
    return str(root / "shards")


def train_tiny(root, encoder: str, shards: str, *overrides: str) -> str:
    """A DePALM adapter on a tiny LLaMA and the tiny encoder ``encoder`` (a ``save_tiny_encoder`` kind), trained for
    4 steps on ``shards`` (caption); returns its run folder."""
    from scaling.cli.main import main
    from scaling.models.tiny import save_tiny_encoder, save_tiny_llm

    llm = save_tiny_llm(str(root / "llama"), "llama")
    enc = save_tiny_encoder(str(root / encoder), encoder)
    run = root / "run"
    assert main(["train", "model.method=depalm", f"model.llm={llm}", f"model.encoder={enc}", "model.frozen_dtype=fp32",
                 "model.map.d_embed=32", "model.map.n_queries=4", f"data.train={shards}", f"data.test={shards}",
                 "data.task=caption", "data.num_workers=0", f"train.output_dir={run}", "train.max_steps=4",
                 "train.global_batch=6", "train.micro_batch=6", "train.precision=fp32", "train.save_every=4",
                 "train.log_every=1", "train.progress_bar=false", "eval.max_new_tokens=6", *overrides]) == 0
    return str(run)


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> dict[str, str]:
    """{'run': a trained run folder, 'media': its images, 'shards': its shards}."""
    root = tmp_path_factory.mktemp("serve_run")
    shards = write_shards(root)
    return {"run": train_tiny(root, "vit", shards), "media": str(root / "media"), "shards": shards}


def write_m4a(path, wav, rate: int) -> str:
    """AAC in MP4 with the brand M4A (ffmpeg's ipod muxer), as phones and iTunes write voice memos; returns the path."""
    import av

    with av.open(str(path), "w", format="ipod") as container:
        stream = container.add_stream("aac", rate=rate)
        stream.layout = "mono"
        frame = av.AudioFrame.from_ndarray(wav[None, :], format="flt", layout="mono")
        frame.sample_rate = rate
        for packet in [*stream.encode(frame), *stream.encode(None)]:
            container.mux(packet)
    return str(path)


def write_clips(media, modality: str) -> list[str]:
    """Test files the adapter never saw, unlike each other: tones as WAV (8, 22.05 and 44.1 kHz: resampled on
    decoding; the 1.5 s one cut to the encoder's length), FLAC, Ogg Vorbis, MP3 and M4A; or six MP4s of 6 to 16
    frames at 32 to 64 px (frames picked and resized on decoding)."""
    import random

    import soundfile as sf

    from scaling.data.synthetic import make_tone, make_video
    from scaling.data.video import encode_video

    media.mkdir(parents=True, exist_ok=True)
    rng = random.Random(7)
    paths = []
    if modality == "audio":
        for name, seconds, rate in (("tone0.wav", 0.6, 22050), ("tone1.flac", 0.8, 16000), ("tone2.wav", 1.5, 44100),
                                    ("tone3.ogg", 0.7, 22050), ("tone4.mp3", 0.9, 24000), ("tone5.wav", 0.5, 8000)):
            wav, _ = make_tone(rng, seconds, rate)
            sf.write(media / name, wav, rate)
            paths.append(str(media / name))
        wav, _ = make_tone(rng, 0.7, 16000)
        paths.append(write_m4a(media / "memo.m4a", wav, 16000))
    else:
        for i, (frames, size) in enumerate(((6, 48), (8, 32), (9, 64), (12, 48), (16, 40), (7, 56))):
            (media / f"clip{i}.mp4").write_bytes(encode_video(make_video(rng, frames, size)[0]))
            paths.append(str(media / f"clip{i}.mp4"))
    return paths


TINY_AV = {"audio": ("ast", ()), "video": ("timesformer", ("data.video_frames=4",))}  # encoder, overrides


@pytest.fixture(scope="session")
def tiny_av_run(tmp_path_factory):
    """``tiny_av_run(modality)`` → {'run': an audio or video adapter's run folder, 'files': its test files of that
    modality}, trained on first use (``scaling.data.synthetic.write_shards``: FLAC tones or MP4 moving squares)."""
    from scaling.data.synthetic import write_shards as write_media_shards

    built: dict[str, dict] = {}

    def get(modality: str) -> dict:
        if modality not in built:
            encoder, overrides = TINY_AV[modality]
            root = tmp_path_factory.mktemp(f"serve_{modality}_run")
            shards = str(root / "shards")
            write_media_shards(shards, [12], split="train", modality=modality, video_frames=4)
            write_media_shards(shards, [4], split="test", modality=modality, video_frames=4, prefix="t")
            built[modality] = {"run": train_tiny(root, encoder, shards, *overrides),
                               "files": write_clips(root / "media", modality)}
        return built[modality]

    return get
