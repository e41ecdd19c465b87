"""Image (and video-frame) preprocessing and augmentation in PIL/numpy/torch (no torchvision).

Training (DePALM supplement C.3): random resized crop to the encoder's size (area scale [0.5, 1],
aspect ratio [3/4, 4/3]), horizontal flip with p=0.5, then RandAugment, then normalisation with the
encoder's mean/std. Evaluation: the encoder processor's deterministic resize (+ center crop) only.

RandAugment comes in two styles (``data.randaugment_style``):

* ``official`` (default): the official DePALM code's ``RandomAugment(2, 7)``
  (``depalm/data/data/augmentation/randomized.py``, written here from its description): N=2 ops drawn
  with replacement from 10 (Identity, AutoContrast, Equalize, Brightness, Sharpness, ShearX/Y,
  TranslateX/Y, Rotate), **each applied with probability 0.5**, level M=7 of 10: enhancement factor
  0.1 + 1.8·M/10 (1.36: always brighter/sharper, no sign), shear ±0.3·M/10, translation ±M pixels,
  rotation ±30·M/10 degrees, bilinear, grey (128) fill;
* ``torchvision``: torchvision's RandAugment ranges (magnitude M of 30, signed enhancements, 14 ops,
  every drawn op applied, black fill).

For a video clip, the crop, flip and RandAugment ops/magnitudes are drawn once and applied to every
frame (:meth:`ImageTransform.frames`). All randomness comes from the ``random.Random`` passed in,
so a sample's augmentation is a function of its seed (exact resume replays it).
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageEnhance, ImageOps

from scaling.common.media import MediaSpec
from scaling.config.data import OFFICIAL_RANDAUGMENT_OPS, RANDAUGMENT_OPS

# ops whose magnitude gets a random sign
_SIGNED = {"ShearX", "ShearY", "TranslateX", "TranslateY", "Rotate", "Brightness", "Color", "Contrast", "Sharpness"}


def randaugment_sample(rng: random.Random, n: int = 2, m: int = 9, ops: Sequence[str] | None = None) -> list[tuple[str, float]]:
    """Draw ``n`` ops (uniformly, with replacement) and their signed magnitudes in [-1, 1] (m / 30)."""
    ops = list(ops or RANDAUGMENT_OPS)
    out = []
    for _ in range(n):
        op = ops[rng.randrange(len(ops))]
        mag = m / 30.0
        if op in _SIGNED and rng.random() < 0.5:
            mag = -mag
        out.append((op, mag))
    return out


_OFFICIAL_SIGNED = {"ShearX", "ShearY", "TranslateX", "TranslateY", "Rotate"}
_GREY = (128, 128, 128)


def official_randaugment_sample(rng: random.Random, n: int = 2, m: int = 7,
                                ops: Sequence[str] | None = None) -> list[tuple[str, float]]:
    """The official code's draw: ``n`` ops with replacement, each kept with probability 0.5, with its
    signed level ``m / 10`` (sign only for the geometric ops). Returns the ops to apply."""
    ops = list(ops or OFFICIAL_RANDAUGMENT_OPS)
    out = []
    for _ in range(n):
        op = ops[rng.randrange(len(ops))]
        keep = rng.random() <= 0.5
        level = m / 10.0
        if op in _OFFICIAL_SIGNED and rng.random() < 0.5:
            level = -level
        if keep:
            out.append((op, level))
    return out


def official_randaugment_apply(img: Image.Image, ops: list[tuple[str, float]]) -> Image.Image:
    """Apply ops drawn by :func:`official_randaugment_sample` with the official magnitude ranges."""
    w, h = img.size
    for op, level in ops:
        if op == "Identity":
            continue
        if op == "ShearX":
            img = img.transform(img.size, Image.AFFINE, (1, 0.3 * level, 0, 0, 1, 0), resample=Image.BILINEAR, fillcolor=_GREY)
        elif op == "ShearY":
            img = img.transform(img.size, Image.AFFINE, (1, 0, 0, 0.3 * level, 1, 0), resample=Image.BILINEAR, fillcolor=_GREY)
        elif op == "TranslateX":  # translate_const 10 at level 10: ±M pixels
            img = img.transform(img.size, Image.AFFINE, (1, 0, 10.0 * level, 0, 1, 0), resample=Image.BILINEAR, fillcolor=_GREY)
        elif op == "TranslateY":
            img = img.transform(img.size, Image.AFFINE, (1, 0, 0, 0, 1, 10.0 * level), resample=Image.BILINEAR, fillcolor=_GREY)
        elif op == "Rotate":
            img = img.rotate(30.0 * level, resample=Image.BILINEAR, fillcolor=_GREY)
        elif op == "Brightness":
            img = ImageEnhance.Brightness(img).enhance(0.1 + 1.8 * abs(level))
        elif op == "Sharpness":
            img = ImageEnhance.Sharpness(img).enhance(0.1 + 1.8 * abs(level))
        elif op == "AutoContrast":
            img = ImageOps.autocontrast(img)
        elif op == "Equalize":
            img = ImageOps.equalize(img)
        else:
            raise ValueError(f"RandAugment op {op!r} has no official-style version; "
                             f"valid: {list(OFFICIAL_RANDAUGMENT_OPS)} (or set data.randaugment_style=torchvision)")
    return img


def randaugment_apply(img: Image.Image, ops: list[tuple[str, float]]) -> Image.Image:
    """Apply drawn ops (torchvision RandAugment's magnitude ranges) to a PIL RGB image."""
    w, h = img.size
    for op, mag in ops:
        if op == "Identity":
            continue
        if op == "ShearX":
            img = img.transform(img.size, Image.AFFINE, (1, 0.3 * mag, 0, 0, 1, 0), resample=Image.NEAREST, fillcolor=(0, 0, 0))
        elif op == "ShearY":
            img = img.transform(img.size, Image.AFFINE, (1, 0, 0, 0.3 * mag, 1, 0), resample=Image.NEAREST, fillcolor=(0, 0, 0))
        elif op == "TranslateX":
            img = img.transform(img.size, Image.AFFINE, (1, 0, 150 / 331 * w * mag, 0, 1, 0), resample=Image.NEAREST, fillcolor=(0, 0, 0))
        elif op == "TranslateY":
            img = img.transform(img.size, Image.AFFINE, (1, 0, 0, 0, 1, 150 / 331 * h * mag), resample=Image.NEAREST, fillcolor=(0, 0, 0))
        elif op == "Rotate":
            img = img.rotate(30.0 * mag, resample=Image.NEAREST, fillcolor=(0, 0, 0))
        elif op == "Brightness":
            img = ImageEnhance.Brightness(img).enhance(1.0 + 0.9 * mag)
        elif op == "Color":
            img = ImageEnhance.Color(img).enhance(1.0 + 0.9 * mag)
        elif op == "Contrast":
            img = ImageEnhance.Contrast(img).enhance(1.0 + 0.9 * mag)
        elif op == "Sharpness":
            img = ImageEnhance.Sharpness(img).enhance(1.0 + 0.9 * mag)
        elif op == "Posterize":
            img = ImageOps.posterize(img, 8 - int(round(abs(mag) * 30 / 7.5)))
        elif op == "Solarize":
            img = ImageOps.solarize(img, int(255 * (1.0 - abs(mag))))
        elif op == "AutoContrast":
            img = ImageOps.autocontrast(img)
        elif op == "Equalize":
            img = ImageOps.equalize(img)
        else:
            raise ValueError(f"unknown RandAugment op {op!r}")
    return img


def random_resized_crop_box(width: int, height: int, scale: Sequence[float], ratio: Sequence[float],
                            rng: random.Random) -> tuple[int, int, int, int]:
    """torchvision's RandomResizedCrop parameters as a PIL box (left, top, right, bottom)."""
    area = width * height
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(10):
        target = area * rng.uniform(scale[0], scale[1])
        aspect = math.exp(rng.uniform(*log_ratio))
        w = int(round(math.sqrt(target * aspect)))
        h = int(round(math.sqrt(target / aspect)))
        if 0 < w <= width and 0 < h <= height:
            top = rng.randint(0, height - h)
            left = rng.randint(0, width - w)
            return left, top, left + w, top + h
    in_ratio = width / height  # fallback: central crop at the nearest allowed ratio
    if in_ratio < ratio[0]:
        w, h = width, int(round(width / ratio[0]))
    elif in_ratio > ratio[1]:
        h, w = height, int(round(height * ratio[1]))
    else:
        w, h = width, height
    top, left = (height - h) // 2, (width - w) // 2
    return left, top, left + w, top + h


def to_tensor(img: Image.Image, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """PIL RGB → normalised float tensor [3, H, W]."""
    arr = np.asarray(img, dtype=np.uint8)
    if arr.ndim == 2:
        arr = np.repeat(arr[:, :, None], 3, axis=2)
    x = torch.from_numpy(arr.copy()).permute(2, 0, 1).float().div_(255.0)
    m = torch.tensor(mean, dtype=torch.float32)[:, None, None]
    s = torch.tensor(std, dtype=torch.float32)[:, None, None]
    return (x - m) / s



#: PIL modes holding more than 8 bits per pixel, and the value that is full white in each (``convert("RGB")``
#: clips them at 255: a mid-grey 16-bit PNG would become white)
WIDE_MODES = {"I;16": 65535, "I;16L": 65535, "I;16B": 65535, "I;16N": 65535, "I": 65535, "F": 1.0}


def to_rgb(img: Image.Image) -> Image.Image:
    """``img`` as 8-bit RGB; 16-bit (``I;16``, ``I``) and float (``F``, taken as 0..1) greyscale scaled to 0..255."""
    if img.mode == "RGB":
        return img
    full = WIDE_MODES.get(img.mode)
    if full is None:
        return img.convert("RGB")
    arr = np.asarray(img, dtype=np.float64)
    if img.mode == "F" and np.nanmax(arr, initial=0.0) > 1.0:  # a float image in 16-bit units
        full = 65535
    grey = np.clip(np.rint(np.nan_to_num(arr) * (255.0 / full)), 0, 255).astype(np.uint8)
    return Image.fromarray(grey).convert("RGB")


class ImageTransform:
    """``transform(img, rng)`` → ``[3, S, S]``; ``transform.frames(imgs, rng)`` → ``[F, 3, S, S]``."""

    def __init__(self, spec: MediaSpec, train: bool, cfg: Any = None):
        self.spec = spec
        self.train = train and (cfg is None or getattr(cfg, "augment", True))
        self.scale = tuple(getattr(cfg, "crop_scale", (0.5, 1.0)))
        self.ratio = tuple(getattr(cfg, "crop_ratio", (3 / 4, 4 / 3)))
        self.hflip = float(getattr(cfg, "hflip", 0.5))
        self.ra_n = int(getattr(cfg, "randaugment_n", 2))
        self.ra_m = int(getattr(cfg, "randaugment_m", 7))
        self.ra_ops = getattr(cfg, "randaugment_ops", None)
        self.ra_style = getattr(cfg, "randaugment_style", "official")

    @property
    def draft_size(self) -> int:
        """Smallest side JPEG decoding may reduce to (PIL draft) without losing output resolution."""
        s = self.spec.image_size
        return int(math.ceil(s * (1.5 if self.train else self.spec.resize_ratio)))

    def prepare(self, img: Image.Image) -> Image.Image:
        if img.format == "JPEG":
            d = self.draft_size
            img.draft("RGB", (d, d))
        return to_rgb(img)

    def sample_params(self, size: tuple[int, int], rng: random.Random) -> dict[str, Any]:
        if not self.train:
            return {}
        box = random_resized_crop_box(size[0], size[1], self.scale, self.ratio, rng)
        flip = rng.random() < self.hflip
        sample = official_randaugment_sample if self.ra_style == "official" else randaugment_sample
        ops = sample(rng, self.ra_n, self.ra_m, self.ra_ops) if self.ra_n > 0 else []
        return {"box": box, "flip": flip, "ops": ops, "size": size}

    def apply(self, img: Image.Image, params: dict[str, Any]) -> torch.Tensor:
        s = self.spec.image_size
        if not params:
            img = self._eval_resize(img)
        else:
            box = params["box"]
            if img.size != params["size"]:  # frames of another size than the first (rare): rescale the box
                fx, fy = img.size[0] / params["size"][0], img.size[1] / params["size"][1]
                box = (box[0] * fx, box[1] * fy, box[2] * fx, box[3] * fy)
            img = img.resize((s, s), self.spec.resample, box=box)
            if params["flip"]:
                img = img.transpose(Image.FLIP_LEFT_RIGHT)
            if params["ops"]:
                apply = official_randaugment_apply if self.ra_style == "official" else randaugment_apply
                img = apply(img, params["ops"])
        return to_tensor(img, self.spec.mean, self.spec.std)

    def _eval_resize(self, img: Image.Image) -> Image.Image:
        s = self.spec.image_size
        if self.spec.resize == "square":
            return img.resize((s, s), self.spec.resample)
        short = int(round(s * self.spec.resize_ratio))
        w, h = img.size
        if w <= h:
            nw, nh = short, max(short, int(round(h * short / w)))
        else:
            nh, nw = short, max(short, int(round(w * short / h)))
        img = img.resize((nw, nh), self.spec.resample)
        left, top = (nw - s) // 2, (nh - s) // 2
        return img.crop((left, top, left + s, top + s))

    def __call__(self, img: Image.Image, rng: random.Random) -> torch.Tensor:
        img = self.prepare(img)
        return self.apply(img, self.sample_params(img.size, rng))

    def frames(self, imgs: Sequence[Image.Image], rng: random.Random) -> torch.Tensor:
        imgs = [self.prepare(im) for im in imgs]
        params = self.sample_params(imgs[0].size, rng)
        return torch.stack([self.apply(im, params) for im in imgs])
