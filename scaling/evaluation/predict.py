"""Captions and answers for the user's own media, from a trained adapter: what ``scaling predict`` and
``scaling serve`` share, so that both give the same text for the same file and settings.

:class:`Predictor` loads an adapter once; :meth:`Predictor.decode` turns one file's bytes (+ an optional
question) into a decoded sample through the same decoding and preprocessing as evaluation shards (no
augmentation), raising :class:`~scaling.data.decode.SampleError` for media that does not decode;
:meth:`Predictor.generate` runs one batched ``generate`` over decoded samples of one task. Batched
generation equals batch-size-1 generation (left padding, position ids from the mask; tested), and
``eval.max_length`` is applied per sample (:meth:`Predictor.max_new_tokens`), so a sample's text never
depends on what it was batched with.
"""

from __future__ import annotations

import json
import random
from typing import Any

from scaling.config.base import ConfigError
from scaling.data.shards import AUDIO_EXTS, IMAGE_EXTS, VIDEO_EXTS

#: member key → modality: every media member the shard decoder reads (:mod:`scaling.data.shards`, the one list),
#: so that ``scaling predict`` and ``scaling serve`` take each type training takes (m4a voice memos included)
KEY_MODALITY = {k: m for m, keys in (("image", IMAGE_EXTS), ("audio", AUDIO_EXTS), ("video", VIDEO_EXTS)) for k in keys}
#: file extension → the shard member key its bytes are decoded as
EXT_KEYS = {ext: ext for ext in KEY_MODALITY}
#: ISO base media (MP4) brands that say the file is audio (AAC/ALAC in MP4: iTunes, phones, ffmpeg's ipod muxer)
AUDIO_BRANDS = (b"M4A ", b"M4B ", b"M4P ")


def sniff(data: bytes) -> str | None:
    """The member key of a file from its first bytes (None when unknown): uploads need not have a name."""
    head = data[:16]
    if head.startswith(b"\xff\xd8\xff"):
        return "jpg"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if head.startswith(b"BM"):
        return "bmp"
    if head.startswith(b"RIFF") and len(head) >= 12:
        return {b"WEBP": "webp", b"WAVE": "wav", b"AVI ": "avi"}.get(head[8:12])
    if head.startswith(b"fLaC"):
        return "flac"
    if head.startswith(b"OggS"):
        return "ogg"
    if head.startswith(b"ID3") or head[:2] in (b"\xff\xfb", b"\xff\xf3", b"\xff\xf2"):
        return "mp3"
    if head[4:8] == b"ftyp":
        return "m4a" if head[8:12] in AUDIO_BRANDS else "mp4"
    if head.startswith(b"\x1a\x45\xdf\xa3"):
        return "mkv"
    return None


def raw_sample(name: str, key: str, data: bytes, question: str | None) -> dict:
    """A shard-like raw sample (``{"__key__", key: bytes, "json": ...}``) for :class:`SampleDecoder`."""
    record: dict[str, Any] = {"id": name, "answers": []}
    if question:
        record["question"] = question
    return {"__key__": name, key: data, "json": json.dumps(record).encode()}


def file_sample(path: str, question: str | None) -> dict:
    """:func:`raw_sample` of a file on disk (its type from the extension); ConfigError when unusable."""
    import os

    if not os.path.isfile(path):
        raise ConfigError(f"{path}: no such file")
    ext = path.rsplit(".", 1)[-1].lower() if "." in path else ""
    if ext not in EXT_KEYS:
        raise ConfigError(f"{path}: unsupported file type {ext!r}; supported: {sorted(EXT_KEYS)}")
    with open(path, "rb") as fh:
        return raw_sample(path, EXT_KEYS[ext], fh.read(), question)


class Predictor:
    """One loaded adapter and what generation needs (tokenizer, decoders and text encoders per task)."""

    def __init__(self, checkpoint: str, device=None, llm: str | None = None, encoder: str | None = None,
                 overrides: list[str] | tuple[str, ...] = (), trust_remote_code: bool = False):
        import torch
        import transformers

        from scaling.models.transforms import media_spec
        from scaling.training.checkpoint import load_adapter
        from scaling.training.loaders import generation_tokenizer

        transformers.utils.logging.set_verbosity_error()
        transformers.utils.logging.disable_progress_bar()  # the output is the predictions only
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.model, self.cfg = load_adapter(checkpoint, self.device, llm=llm, encoder=encoder, overrides=list(overrides),
                                            trust_remote_code=trust_remote_code)
        self.checkpoint = checkpoint
        self.task = self.cfg.data.task  # what the adapter was trained for
        self.spec = media_spec(self.cfg.model, self.cfg.data)
        self.modality = self.spec.modality
        self.tokenizer = generation_tokenizer(self.cfg.model.llm, "prediction", self.cfg.model.trust_remote_code)
        half = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[self.cfg.model.frozen_dtype]
        self.media_dtype = half if self.device.type == "cuda" else None
        gen = self.cfg.eval.generation()
        self.default_beams, self.default_new_tokens = gen["num_beams"], gen["max_new_tokens"]
        self.max_length, self.stop_strings = gen["max_length"], gen["stop_strings"]
        self.kv_cache = gen["kv_cache"]
        self._decoders: dict[str, Any] = {}
        self._texts: dict[str, Any] = {}

    def task_for(self, question: str | None) -> str:
        """``vqa`` with a question, else the adapter's task; ConfigError for a QA adapter without one."""
        if question:
            return "vqa"
        if self.task != "caption":
            raise ConfigError(f"this checkpoint was trained for {self.task!r}: ask a question")
        return "caption"

    def _decoder(self, task: str):
        from scaling.data.decode import SampleDecoder

        if task not in self._decoders:
            self._decoders[task] = SampleDecoder(self.spec, train=False, task=task, cfg=self.cfg.data)
        return self._decoders[task]

    def _text(self, task: str):
        from scaling.data.text import text_encoder_for

        if task not in self._texts:
            self._texts[task] = text_encoder_for(self.cfg, self.tokenizer, task)
        return self._texts[task]

    def decode(self, raw: dict, task: str) -> dict:
        """The decoded sample of a raw one (SampleError when its media does not decode)."""
        return self._decoder(task)(raw, random.Random(0))

    def prompt_length(self, sample: dict, task: str) -> int:
        from scaling.data.collate import collate

        return int(collate([sample], self._text(task), train=False)["input_ids"].shape[1])

    def max_new_tokens(self, requested: int | None, sample: dict | None = None, task: str = "caption") -> int:
        """The new-token budget of one sample: ``requested`` when given, else ``eval.max_new_tokens`` capped by
        ``eval.max_length`` minus the sample's own prompt length (as evaluation does for a batch of one)."""
        if requested:
            return int(requested)
        if self.max_length is None or sample is None:
            return self.default_new_tokens
        return max(1, min(self.default_new_tokens, self.max_length - self.prompt_length(sample, task)))

    def generate(self, samples: list[dict], task: str, num_beams: int | None = None,
                 max_new_tokens: int | None = None) -> list[str]:
        """One batched ``generate`` over decoded samples of ``task`` → their post-processed texts."""
        from scaling.data.collate import collate
        from scaling.evaluation.evaluate import generate_batch

        batch = collate(samples, self._text(task), train=False)
        return generate_batch(self.model, self.tokenizer, batch, max_new_tokens or self.default_new_tokens,
                              num_beams or self.default_beams, self.stop_strings, media_dtype=self.media_dtype,
                              max_length=None if max_new_tokens else self.max_length, kv_cache=self.kv_cache)
