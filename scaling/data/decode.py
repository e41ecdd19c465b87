"""Raw shard sample (bytes per member) → decoded sample ready for :func:`scaling.data.collate.collate`.

:class:`SampleDecoder` parses the json, picks the training answer (one of the references at random:
"duplicate inputs" of the DePALM supplement), and decodes + preprocesses the media of the expected
modality: image (PIL → :class:`~scaling.data.augment.ImageTransform`), video (PyAV or frame
sequence → the same transform with shared parameters on all frames), audio (→ the spec's front-end: Kaldi log-mel
or the encoder's own, ``MediaSpec.audio_frontend``; SpecAugment
at training) or cached features (one of the K stored views at random at training, view 0 at eval).
Any failure (bad json, a record that is not an object, ``answers`` that is not a list of strings, a prompt
that is not a string, unreadable media or features, decoded media holding NaN or inf) raises :class:`SampleError` naming the sample; the stream counts and logs the sample and
goes on without it.
"""

from __future__ import annotations

import io
import random
from typing import Any

import numpy as np
import torch
from PIL import Image

from scaling.common.media import MediaSpec
from scaling.data import audio as audio_mod
from scaling.data.augment import ImageTransform
from scaling.data.shards import AUDIO_EXTS, FEATURE_EXTS, FRAME_RE, IMAGE_EXTS, VIDEO_EXTS, read_record


class SampleError(ValueError):
    """A sample that cannot be used (corrupt or missing media, bad json). ``reason`` says why, ``key``
    names the sample when known (the message holds both)."""

    def __init__(self, reason: str, key: str | None = None):
        super().__init__(f"sample {key}: {reason}" if key else reason)
        self.reason = reason
        self.key = key


def load_features(sample: dict[str, Any]) -> np.ndarray:
    """The cached features of a sample: float16 ``[views, levels, tokens, dim]``."""
    if "npy" in sample:
        arr = _read_member("npy", lambda: np.load(io.BytesIO(sample["npy"]), allow_pickle=False))
    elif "safetensors" in sample:
        from safetensors.numpy import load

        tensors = _read_member("safetensors", lambda: load(sample["safetensors"]))
        if "features" not in tensors:
            raise SampleError(f"the safetensors member has no tensor 'features' (it has {sorted(tensors)}); "
                              "re-create the shards with `scaling data cache-features`")
        arr = tensors["features"]
    else:
        raise SampleError("no cached features (npy/safetensors member)")
    if not isinstance(arr, np.ndarray):
        raise SampleError(f"cached features must be an array, got {type(arr).__name__}")
    if arr.ndim == 3:
        arr = arr[None]
    if arr.ndim != 4:
        raise SampleError(f"cached features must be [views, levels, tokens, dim], got shape {arr.shape}")
    return arr


def _read_member(ext: str, read):
    """``read()``, with any failure (truncated or corrupt bytes) turned into a :class:`SampleError`."""
    try:
        return read()
    except Exception as err:  # noqa: BLE001 - numpy/safetensors raise ValueError, OSError, their own errors
        raise SampleError(f"cannot read the cached features (.{ext}): {type(err).__name__}: {err}; the shard is "
                          "corrupt: re-create it with `scaling data cache-features`") from None


def parse_record(raw: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """The sample's json record and its answers (the strings of ``answers``; ``[]`` when absent)."""
    record, why = read_record(raw)
    if why:
        raise SampleError(why)
    return record, list(record.get("answers", []))


def _check_finite(media: Any, what: str) -> None:
    """A sample whose decoded media holds NaN or inf is bad (it would poison the step's gradients, or be scored
    with an empty prediction): :class:`SampleError`."""
    if isinstance(media, torch.Tensor) and media.is_floating_point() and not bool(torch.isfinite(media).all()):
        bad = int((~torch.isfinite(media)).sum())
        raise SampleError(f"the {what} holds {bad} non-finite value(s) (NaN or inf): the file is corrupt")


class SampleDecoder:
    """``decoder(raw, rng)`` → ``{"id", "record", "target", "answers", "task", "media_key", "media"}``."""

    def __init__(self, spec: MediaSpec | None, train: bool, task: str, cfg: Any = None, use_features: bool = False,
                 require_answers: bool | None = None):
        self.spec = spec
        self.train = train
        # a sample without answers cannot be trained on, nor scored (the data loaders skip and count it);
        # prediction on the user's own files needs none
        self.require_answers = train if require_answers is None else require_answers
        self.task = task
        self.cfg = cfg
        self.use_features = use_features
        self.augment = train and (cfg is None or getattr(cfg, "augment", True))
        self.image = ImageTransform(spec, train, cfg) if spec is not None and spec.modality in ("image", "video") else None
        self.freq_mask = int(getattr(cfg, "freq_mask", 24))
        self.time_mask = int(getattr(cfg, "time_mask", 96))

    def __call__(self, raw: dict[str, Any], rng: random.Random) -> dict[str, Any]:
        """The decoded sample; any problem with it raises :class:`SampleError` naming its key."""
        key = raw.get("__key__") if isinstance(raw, dict) else None
        try:
            return self._decode(raw, rng)
        except SampleError as err:
            raise SampleError(err.reason, key) from None
        except Exception as err:  # noqa: BLE001 - anything wrong with one sample must only skip that sample
            raise SampleError(f"cannot decode: {type(err).__name__}: {err}", key) from None

    def _decode(self, raw: dict[str, Any], rng: random.Random) -> dict[str, Any]:
        record, answers = parse_record(raw)
        if self.require_answers and not answers:
            raise SampleError("no answer to train on" if self.train else "no reference answer to score against")
        target = answers[rng.randrange(len(answers))] if (self.train and answers) else (answers[0] if answers else "")
        out = {
            "id": str(record.get("id", raw.get("__key__"))),
            "record": record,
            "target": target,
            "answers": answers,
            "task": record.get("task", self.task),
        }
        if self.use_features:
            arr = load_features(raw)
            view = rng.randrange(arr.shape[0]) if self.train else 0
            out["media_key"], out["media"] = "features", torch.from_numpy(np.ascontiguousarray(arr[view]))
            _check_finite(out["media"], "cached features")
            return out
        if self.spec is None:
            out["media_key"], out["media"] = None, None
            return out
        kind = self.spec.modality
        try:
            if kind == "image":
                out["media"] = self._image(raw, rng)
            elif kind == "video":
                out["media"] = self._video(raw, rng)
            elif kind == "audio":
                out["media"] = self._audio(raw, rng)
            else:
                raise SampleError(f"unknown modality {kind!r}")
        except SampleError:
            raise
        except Exception as err:  # noqa: BLE001 - PIL/FFmpeg/libsndfile raise many kinds
            raise SampleError(f"cannot decode {kind}: {type(err).__name__}: {err}") from None
        _check_finite(out["media"], f"decoded {kind}")
        out["media_key"] = self.spec.media_key
        return out

    @staticmethod
    def _member(raw: dict[str, Any], exts: tuple[str, ...], what: str) -> bytes:
        for ext in exts:
            if ext in raw:
                return raw[ext]
        have = sorted(k for k in raw if not k.startswith("__"))
        raise SampleError(f"no {what} member (looked for {list(exts)}; the sample has {have})")

    def _image(self, raw, rng) -> torch.Tensor:
        data = self._member(raw, IMAGE_EXTS, "image")
        img = Image.open(io.BytesIO(data))
        return self.image(img, rng)

    def _video(self, raw, rng) -> torch.Tensor:
        from scaling.data.video import decode_frame_sequence, decode_video

        n = self.spec.frames
        pick = rng if self.train else None
        if any(FRAME_RE.match(k) for k in raw if isinstance(k, str)):
            frames = decode_frame_sequence(raw, n, pick)
        else:
            data = self._member(raw, VIDEO_EXTS, "video")
            frames = decode_video(data, n, pick, max_side=4 * self.spec.image_size)
        return self.image.frames(frames, rng)

    def _audio(self, raw, rng) -> torch.Tensor:
        data = self._member(raw, AUDIO_EXTS, "audio")
        spec = self.spec
        wav = audio_mod.decode_audio(data, spec.sample_rate)
        if spec.audio_frontend is not None:  # the encoder's own front-end (Whisper, CLAP: their transformers extractors)
            feats = spec.audio_frontend(wav, spec, rng if self.train else None)
        else:
            feats = audio_mod.ast_features(wav, spec.num_mel_bins, spec.max_length, spec.audio_mean, spec.audio_std, spec.sample_rate)
        if self.augment:
            feats = audio_mod.spec_augment(feats, self.freq_mask, self.time_mask, rng)
        return feats


__all__ = ["FEATURE_EXTS", "SampleDecoder", "SampleError", "load_features", "parse_record"]
