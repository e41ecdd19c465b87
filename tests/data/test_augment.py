"""Image preprocessing/augmentation: shapes, normalisation, determinism at eval, RandAugment ops."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
import torch
from PIL import Image

from scaling.common.media import IMAGENET_DEFAULT_MEAN, OPENAI_CLIP_MEAN, MediaSpec
from scaling.config import load_config
from scaling.config.base import ConfigError
from scaling.config.data import RANDAUGMENT_OPS, DataConfig
from scaling.data.augment import ImageTransform, randaugment_apply, randaugment_sample, random_resized_crop_box
from scaling.models.transforms import media_spec


def photo(w=64, h=48, seed=0):
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8))


def test_eval_transform_is_deterministic_and_normalised():
    spec = MediaSpec("image", image_size=32, mean=(0.5,) * 3, std=(0.5,) * 3, resize="square")
    t = ImageTransform(spec, train=False, cfg=DataConfig())
    img = photo()
    a = t(img, random.Random(0))
    b = t(img, random.Random(123))
    assert a.shape == (3, 32, 32) and torch.equal(a, b)
    assert a.min() >= -1 and a.max() <= 1
    expected = (torch.from_numpy(np.array(img.resize((32, 32), spec.resample))).permute(2, 0, 1).float() / 255 - 0.5) / 0.5
    assert torch.allclose(a, expected, atol=1e-6)


def test_shortest_edge_center_crop():
    spec = MediaSpec("image", image_size=16, resize="shortest_edge", resize_ratio=1.0, mean=(0,) * 3, std=(1,) * 3)
    img = Image.new("RGB", (40, 20), (0, 0, 0))
    img.paste((255, 255, 255), (0, 0, 10, 20))  # white left quarter: cropped away by the center crop
    out = ImageTransform(spec, train=False)(img, random.Random(0))
    assert out.shape == (3, 16, 16) and out.max() < 0.1


def test_train_transform_random_but_seeded():
    spec = MediaSpec("image", image_size=32)
    t = ImageTransform(spec, train=True, cfg=DataConfig())
    img = photo()
    a, b, c = (t(img, random.Random(s)) for s in (1, 1, 2))
    assert a.shape == (3, 32, 32)
    assert torch.equal(a, b) and not torch.equal(a, c)
    no_aug = ImageTransform(spec, train=True, cfg=DataConfig(augment=False))
    assert torch.equal(no_aug(img, random.Random(1)), no_aug(img, random.Random(2)))


def test_random_resized_crop_bounds():
    rng = random.Random(0)
    for _ in range(200):
        l, t, r, b = random_resized_crop_box(200, 100, (0.5, 1.0), (3 / 4, 4 / 3), rng)
        w, h = r - l, b - t
        assert 0 <= l and r <= 200 and 0 <= t and b <= 100
        assert 0.5 * 20000 * 0.95 <= w * h <= 20000
        assert 3 / 4 * 0.9 <= w / h <= 4 / 3 * 1.1 or (w, h) == (133, 100)


@pytest.mark.parametrize("op", RANDAUGMENT_OPS)
def test_every_randaugment_op(op):
    img = photo(40, 40)
    out = randaugment_apply(img, [(op, 9 / 30)])
    assert out.size == img.size and out.mode == "RGB"
    if op != "Identity":
        assert not np.array_equal(np.asarray(out), np.asarray(img)), op


def test_randaugment_sampling():
    ops = randaugment_sample(random.Random(0), n=2, m=9)
    assert len(ops) == 2 and all(abs(m) == pytest.approx(0.3) for _, m in ops)
    counts = {op for s in range(300) for op, _ in randaugment_sample(random.Random(s), 2, 9)}
    assert counts == {  # torchvision's RandAugment operations
        "Identity", "ShearX", "ShearY", "TranslateX", "TranslateY", "Rotate", "Brightness", "Color", "Contrast",
        "Sharpness", "Posterize", "Solarize", "AutoContrast", "Equalize",
    }
    only = {op for s in range(50) for op, _ in randaugment_sample(random.Random(s), 2, 9, ["Identity", "Rotate"])}
    assert only == {"Identity", "Rotate"}


def test_video_frames_share_parameters():
    spec = MediaSpec("video", image_size=24, frames=3)
    t = ImageTransform(spec, train=True, cfg=DataConfig())
    frame = photo(50, 40, seed=3)
    out = t.frames([frame, frame.copy(), frame.copy()], random.Random(4))
    assert out.shape == (3, 3, 24, 24)
    assert torch.equal(out[0], out[1]) and torch.equal(out[1], out[2])  # same crop/flip/ops on every frame


def test_media_spec_defaults_and_preprocessor_config(tmp_path):
    from scaling.models.tiny import save_tiny_encoder

    clip = media_spec(load_config(None, ["model.encoder=tiny-clip"]).model)
    assert clip.mean == OPENAI_CLIP_MEAN and clip.resize == "shortest_edge" and clip.image_size == 32
    dino = media_spec(load_config(None, ["model.encoder=tiny-dinov2"]).model)
    assert dino.mean == IMAGENET_DEFAULT_MEAN and dino.resize_ratio == pytest.approx(256 / 224)
    vit = media_spec(load_config(None, ["model.encoder=tiny-vit"]).model)
    assert vit.mean == (0.5, 0.5, 0.5) and vit.resize == "square"
    video = media_spec(load_config(None, ["model.encoder=tiny-timesformer"]).model)
    assert video.modality == "video" and video.frames == 4
    per_frame = media_spec(load_config(None, ["model.encoder=tiny-vit", "model.video_frames=3"]).model)
    assert per_frame.modality == "video" and per_frame.frames == 3
    audio = media_spec(load_config(None, ["model.encoder=tiny-ast"]).model)
    assert (audio.modality, audio.num_mel_bins, audio.max_length) == ("audio", 32, 64)
    d = save_tiny_encoder(str(tmp_path / "enc"), "vit")
    (tmp_path / "enc" / "preprocessor_config.json").write_text(json.dumps(
        {"image_mean": [0.1, 0.2, 0.3], "image_std": [1, 1, 1], "size": {"shortest_edge": 40},
         "crop_size": {"height": 32, "width": 32}, "do_center_crop": True, "resample": 2}))
    spec = media_spec(load_config(None, [f"model.encoder={d}"]).model)
    assert spec.mean == (0.1, 0.2, 0.3) and spec.resize == "shortest_edge" and spec.resize_ratio == pytest.approx(40 / 32)


def test_data_config_validation():
    with pytest.raises(ConfigError, match="data.fraction"):
        load_config(None, ["data.fraction=0"])
    with pytest.raises(ConfigError, match="randaugment_ops"):
        load_config(None, ["data.randaugment_ops=[Rotat]"])


def test_official_style_randaugment_draw_and_magnitudes():
    """DePALM's RandomAugment(2, 7): 2 draws over its 10 ops, each kept with p 0.5, level 7/10 (signed geometry)."""
    from scaling.data.augment import official_randaugment_apply, official_randaugment_sample

    draws = [official_randaugment_sample(random.Random(s), 2, 7) for s in range(2000)]
    kept = sum(len(d) for d in draws) / (2 * len(draws))
    assert abs(kept - 0.5) < 0.03  # each drawn op applied with probability 0.5
    seen = {op for d in draws for op, _ in d}
    # the official DePALM code's RandomAugment(2, 7, augs=[...]) (depalm/data/data/data_base.py)
    assert seen == {"Identity", "AutoContrast", "Equalize", "Brightness", "Sharpness", "ShearX", "ShearY", "TranslateX",
                    "TranslateY", "Rotate"}
    levels = {(op, lv) for d in draws for op, lv in d}
    assert ("Brightness", 0.7) in levels and ("Brightness", -0.7) not in levels  # enhancement: no sign
    assert ("Rotate", 0.7) in levels and ("Rotate", -0.7) in levels
    img = Image.fromarray(np.full((32, 32, 3), 100, dtype=np.uint8))
    bright = np.asarray(official_randaugment_apply(img, [("Brightness", 0.7)]))
    assert (bright == 136).all()  # factor 0.1 + 1.8 * 0.7 = 1.36
    moved = np.asarray(official_randaugment_apply(img, [("TranslateX", 0.7)]))
    assert (moved[:, -7:] == 128).all() and (moved[:, :-7] == 100).all()  # 7 pixels, grey fill
    with pytest.raises(ValueError, match="official-style"):
        official_randaugment_apply(img, [("Solarize", 0.7)])


def test_official_style_is_the_default_and_torchvision_stays_available():
    cfg = DataConfig()
    assert (cfg.randaugment_style, cfg.randaugment_n, cfg.randaugment_m) == ("official", 2, 7)
    with pytest.raises(ConfigError, match="0..10"):
        load_config(None, ["data.randaugment_m=9", "data.randaugment_m=12"])
    with pytest.raises(ConfigError, match="Solarize"):
        load_config(None, ["data.randaugment_ops=[Solarize]"])
    tv = load_config(None, ["data.randaugment_style=torchvision", "data.randaugment_m=9", "data.randaugment_ops=[Solarize]"])
    assert tv.data.randaugment_m == 9
