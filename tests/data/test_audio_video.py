"""Audio (AST fbank, masking, decoding) and video (frame selection, PyAV decoding) preprocessing."""

from __future__ import annotations

import io
import random

import numpy as np
import pytest
import soundfile as sf
import torch

from scaling.config import load_config
from scaling.data.audio import ast_features, decode_audio, encode_flac, resample, spec_augment
from scaling.data.synthetic import make_video, write_shards
from scaling.data.video import decode_frame_sequence, decode_video, encode_video, frame_indices
from scaling.models.tiny import word_tokenizer
from scaling.training.loaders import build_loader


def tone(seconds=2.0, rate=16000, seed=0, noise=0.02):
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    return (0.3 * np.sin(2 * np.pi * 440 * t) + noise * rng.standard_normal(t.size)).astype(np.float32)


@pytest.mark.filterwarnings("ignore:At least one mel filter")
@pytest.mark.parametrize("bins,length", [(128, 1024), (32, 64)])
def test_fbank_matches_transformers_ast_feature_extractor(bins, length):
    from transformers import ASTFeatureExtractor

    wav = tone()
    ref = ASTFeatureExtractor(num_mel_bins=bins, max_length=length)(wav, sampling_rate=16000, return_tensors="np")["input_values"][0]
    ours = ast_features(wav, bins, length).numpy()
    assert ours.shape == ref.shape == (length, bins)
    assert np.abs(ours - ref).max() < 1e-4


def test_padding_and_truncation():
    short = ast_features(tone(0.5), 32, 100)
    assert short.shape == (100, 32)
    assert torch.all(short[60:] == (0 - -4.2677393) / (2 * 4.5689974))  # zero-padded fbank, then normalised
    long = ast_features(tone(2.0), 32, 100)
    assert long.shape == (100, 32) and not torch.all(long[60:] == long[99, 0])


def test_spec_augment_masks_within_limits():
    x = torch.randn(96, 32) + 5
    for seed in range(20):
        y = spec_augment(x, 24, 40, random.Random(seed))
        zero_cols = int((y == 0).all(dim=0).sum())
        zero_rows = int((y == 0).all(dim=1).sum())
        assert zero_cols < 24 and zero_rows < 40
    assert torch.equal(spec_augment(x, 24, 40, random.Random(3)), spec_augment(x, 24, 40, random.Random(3)))
    assert any((spec_augment(x, 24, 40, random.Random(s)) == 0).any() for s in range(5))


def test_decode_and_resample():
    wav = tone(1.0, 22050, noise=0)
    buf = io.BytesIO()
    sf.write(buf, np.stack([wav, wav], 1), 22050, format="WAV")
    out = decode_audio(buf.getvalue())
    assert out.ndim == 1 and abs(len(out) - 16000) <= 1
    ref = tone(1.0, 16000, noise=0)
    assert np.abs(out[200:-200] - ref[200:-200]).max() < 0.01
    flac = encode_flac(tone(0.25))
    assert abs(len(decode_audio(flac)) - 4000) <= 1
    assert len(resample(tone(1.0, 48000), 48000, 16000)) == 16000
    with pytest.raises(ValueError):
        decode_audio(b"not audio at all")


def test_frame_indices():
    assert frame_indices(100, 4) == [12, 37, 62, 87]
    assert frame_indices(3, 5) == [0, 0, 1, 2, 2]
    for seed in range(10):
        idx = frame_indices(40, 8, random.Random(seed))
        assert all(i * 5 <= x < (i + 1) * 5 for i, x in enumerate(idx))


def test_decode_video_selects_frames():
    frames, color, move = make_video(random.Random(0), frames=12, size=32)
    data = encode_video(frames)
    got = decode_video(data, 4)
    assert len(got) == 4 and got[0].size == (32, 32)
    # the square moves: uniform frames are distinct, in temporal order
    ys = [int(np.argmax(np.asarray(f)[:, 16].sum(1) != np.asarray(f)[0, 0].sum())) for f in got]
    assert ys == sorted(ys) or ys == sorted(ys, reverse=True)
    a = decode_video(data, 4, random.Random(1))
    b = decode_video(data, 4, random.Random(1))
    assert [np.asarray(x).tobytes() for x in a] == [np.asarray(x).tobytes() for x in b]
    seq = {f"f{i:03d}.jpg": _jpg(f) for i, f in enumerate(frames[:6])}
    assert len(decode_frame_sequence(seq, 3)) == 3


def _jpg(arr):
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="JPEG")
    return buf.getvalue()


def test_audio_and_video_loaders(tmp_path):
    tok = word_tokenizer()
    write_shards(str(tmp_path / "a"), [3, 2], modality="audio")
    write_shards(str(tmp_path / "v"), [3, 2], modality="video", task="videoqa")
    cfg = load_config(None, ["model.encoder=tiny-ast", f"data.train={tmp_path / 'a'}", "train.micro_batch=2", "data.num_workers=0"])
    batch = next(iter(build_loader(cfg, tok, "train", 0, 1, True)))
    assert batch["audio"].shape == (2, 64, 32)
    ev = build_loader(cfg, tok, "train", 0, 1, False)
    b1, b2 = next(iter(ev))["audio"], next(iter(ev))["audio"]
    assert torch.equal(b1, b2)  # no random masking at evaluation
    cfg = load_config(None, ["model.encoder=tiny-timesformer", f"data.train={tmp_path / 'v'}", "train.micro_batch=2",
                             "data.num_workers=0"])
    batch = next(iter(build_loader(cfg, tok, "train", 0, 1, True)))
    assert batch["video"].shape == (2, 4, 3, 32, 32)
    per_frame = load_config(None, ["model.encoder=tiny-vit", "model.video_frames=3", f"data.train={tmp_path / 'v'}",
                                   "train.micro_batch=2", "data.num_workers=0"])
    batch = next(iter(build_loader(per_frame, tok, "train", 0, 1, True)))
    assert batch["video"].shape == (2, 3, 3, 32, 32)
    ids = tok.convert_ids_to_tokens(batch["input_ids"][0].tolist())
    # video QA uses the VQA template (the official "{question}\n\nAnswer:" instruction)
    assert ids[ids.index("?") + 1:ids.index("?") + 3] == ["answer", ":"]


@pytest.mark.parametrize("modality,member", [("audio", "flac"), ("video", "mp4"), ("image", "jpg")])
def test_undecodable_media_raise_sample_error(modality, member):
    from scaling.common.media import MediaSpec
    from scaling.data.decode import SampleDecoder, SampleError

    raw = {"__key__": "k", "json": b'{"id": "1", "answers": ["a"]}', member: b"\x00garbage" * 20}
    dec = SampleDecoder(MediaSpec(modality, image_size=16, frames=2, num_mel_bins=32, max_length=64), True, "caption")
    with pytest.raises(SampleError, match=f"cannot decode {modality}"):
        dec(raw, random.Random(0))
    with pytest.raises(SampleError, match="no .* member"):
        dec({"__key__": "k", "json": raw["json"]}, random.Random(0))
