"""The HTML report's gallery data: for each benchmark, every test sample with its media, question,
references, and each run's prediction and per-sample score.

Predictions come from the ``predictions.jsonl`` beside the scores the report uses (``scaling eval``'s, see
:func:`scaling.evaluation.report.scores_path`). Media and questions are read back from the evaluated shards
(``metrics.json``'s ``data``, else the run config's ``data.SPLIT``): an image becomes a small JPEG thumbnail,
audio an ``<audio>`` source (files up to :data:`MAX_AUDIO_BYTES`), a video a strip of :data:`STRIP_FRAMES`
frames, all as ``data:`` URIs so that the page is one self-contained file. Samples whose shards cannot be
read keep their text; the gallery says how many have no media.
"""

from __future__ import annotations

import base64
import dataclasses
import io
import json
import os
from collections.abc import Callable, Sequence
from typing import Any

from scaling.data.sources import checks_paths
from scaling.evaluation.sample_scores import SCORE_NAMES, sample_scores

THUMB = 112  # px, longest side of an image thumbnail
STRIP_FRAMES = 4
MAX_AUDIO_BYTES = 512 * 1024
AUDIO_MIME = {"wav": "audio/wav", "flac": "audio/flac", "mp3": "audio/mpeg", "ogg": "audio/ogg", "m4a": "audio/mp4"}


@dataclasses.dataclass
class GalleryRun:
    label: str
    path: str
    predictions: dict[str, str]
    scores: dict[str, float | None]
    note: str | None = None


@dataclasses.dataclass
class Gallery:
    benchmark: str
    task: str
    score_name: str
    runs: list[GalleryRun]
    samples: list[dict[str, Any]]  # {"id", "question", "refs", "media": {"kind", "src"} | None, "preds", "scores"}
    notes: list[str]


def eval_dir_of(scores_file: str | None) -> str | None:
    """The folder of ``predictions.jsonl`` for a run's scores file (None for the training's own metrics)."""
    if not scores_file:
        return None
    folder = os.path.dirname(scores_file)
    return folder if os.path.isfile(os.path.join(folder, "predictions.jsonl")) else None


def read_predictions_file(path: str) -> tuple[dict[str, str], dict[str, list[str]]]:
    preds: dict[str, str] = {}
    refs: dict[str, list[str]] = {}
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            if not line.strip():
                continue
            row = json.loads(line)
            sid = str(row.get("id"))
            preds[sid] = str(row.get("prediction", ""))
            refs[sid] = [str(r) for r in row.get("references") or []]
    return preds, refs


def _data_uri(data: bytes, mime: str) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def _jpeg(img) -> str:
    buf = io.BytesIO()
    img.convert("RGB").save(buf, format="JPEG", quality=80)
    return _data_uri(buf.getvalue(), "image/jpeg")


def media_preview(raw: dict[str, Any]) -> dict[str, str] | None:
    """``{"kind": image|audio|video, "src": data URI}`` for a raw shard sample (None when it has no media)."""
    from PIL import Image

    from scaling.data.shards import AUDIO_EXTS, FRAME_RE, IMAGE_EXTS, VIDEO_EXTS

    for ext in IMAGE_EXTS:
        if ext in raw:
            img = Image.open(io.BytesIO(raw[ext]))
            img.thumbnail((THUMB, THUMB))
            return {"kind": "image", "src": _jpeg(img)}
    frames = None
    if any(isinstance(k, str) and FRAME_RE.match(k) for k in raw):
        from scaling.data.video import decode_frame_sequence

        frames = decode_frame_sequence(raw, STRIP_FRAMES)
    else:
        for ext in VIDEO_EXTS:
            if ext in raw:
                from scaling.data.video import decode_video

                frames = decode_video(raw[ext], STRIP_FRAMES, None, max_side=THUMB * 2)
                break
    if frames:
        thumbs = []
        for f in frames:
            f = f.convert("RGB")
            f.thumbnail((THUMB, THUMB))
            thumbs.append(f)
        strip = Image.new("RGB", (sum(t.width for t in thumbs) + 2 * (len(thumbs) - 1), max(t.height for t in thumbs)), "white")
        x = 0
        for t in thumbs:
            strip.paste(t, (x, 0))
            x += t.width + 2
        return {"kind": "video", "src": _jpeg(strip)}
    for ext in AUDIO_EXTS:
        if ext in raw:
            if len(raw[ext]) > MAX_AUDIO_BYTES:
                return {"kind": "audio-too-large", "src": ""}
            return {"kind": "audio", "src": _data_uri(raw[ext], AUDIO_MIME.get(ext, "audio/wav"))}
    return None


def read_media(source: str, split: str, wanted: set[str], warn: Callable[[str], None]) -> dict[str, dict[str, Any]]:
    """``{id: {"question", "media"}}`` for the wanted sample ids of a shard source (what could be read)."""
    from scaling.data.shards import parse_json, read_positions, resolve_split

    out: dict[str, dict[str, Any]] = {}
    try:
        shards = resolve_split(source, split).shards
    except Exception as err:  # noqa: BLE001 - a moved or deleted dataset: the gallery keeps its text
        warn(f"cannot open the evaluated data {source!r} ({err}): the gallery shows no media for it")
        return out
    for shard in shards:
        if len(out) == len(wanted):
            break
        try:
            for _, raw, key in read_positions(shard.url):
                if raw is None:
                    continue
                try:
                    record = parse_json(raw)
                except (ValueError, UnicodeDecodeError):
                    continue
                sid = str(record.get("id", key))
                if sid not in wanted or sid in out:
                    continue
                try:
                    media = media_preview(raw)
                except Exception as err:  # noqa: BLE001 - one bad sample: no preview, the rest go on
                    media = {"kind": "error", "src": f"{type(err).__name__}: {err}"}
                out[sid] = {"question": record.get("question") or record.get("prompt"), "media": media}
        except Exception as err:  # noqa: BLE001 - an unreadable shard
            warn(f"cannot read shard {shard.url} ({err}): its samples have no media in the gallery")
    return out


def _source_of(run_path: str, scores_file: str | None, split: str) -> str | None:
    import yaml

    if scores_file:
        try:
            with open(scores_file) as fh:
                data = json.load(fh).get("data")
            if isinstance(data, str) and data:
                return data
        except (OSError, ValueError, AttributeError):
            pass
    try:
        with open(os.path.join(run_path, "config.yaml")) as fh:
            cfg = yaml.safe_load(fh) or {}
        value = (cfg.get("data") or {}).get(split)
        shards = isinstance(value, str) and value and not value.startswith("pipe:") and checks_paths(value)
        return value if shards else None  # not a command, nor a registered source (no files: scaling.data.sources)
    except (OSError, yaml.YAMLError, AttributeError):
        return None


def build_gallery(benchmark: str, task: str, runs: Sequence[tuple[str, str]], split: str = "test",
                  warn: Callable[[str], None] = lambda m: None, media: bool = True) -> Gallery | None:
    """The gallery of one benchmark from its runs ``[(label, run_dir), ...]`` (None when no run has predictions)."""
    from scaling.evaluation.report import scores_path

    gruns: list[GalleryRun] = []
    references: dict[str, list[str]] = {}
    sources: list[str] = []
    notes: list[str] = []
    for label, path in runs:
        scores_file = scores_path(path, split)
        folder = eval_dir_of(scores_file)
        if folder is None:
            notes.append(f"{label}: no predictions.jsonl beside its scores (run `scaling eval --checkpoint {path} "
                         f"--split {split}`)")
            continue
        preds, refs = read_predictions_file(os.path.join(folder, "predictions.jsonl"))
        for sid, r in refs.items():
            if r and sid not in references:
                references[sid] = r
        scores, note = sample_scores(task, preds, refs) if task in SCORE_NAMES else (dict.fromkeys(preds), None)
        if note:
            notes.append(f"{label}: {note}")
        gruns.append(GalleryRun(label, path, preds, scores, note))
        source = _source_of(path, scores_file, split)
        if source and source not in sources:
            sources.append(source)
    if not gruns:
        return None
    ids = sorted({sid for r in gruns for sid in r.predictions}, key=_natural)
    found: dict[str, dict[str, Any]] = {}
    if media:
        for source in sources:
            missing = {i for i in ids if i not in found}
            if not missing:
                break
            found.update(read_media(source, split, missing, lambda m: notes.append(m) or warn(m)))
        lacking = sum(1 for i in ids if (found.get(i) or {}).get("media") is None)
        if lacking:
            notes.append(f"{lacking} of {len(ids)} samples have no media preview (data not found or not readable)")
    samples = []
    for sid in ids:
        extra = found.get(sid, {})
        samples.append({
            "id": sid, "question": extra.get("question"), "refs": references.get(sid, []), "media": extra.get("media"),
            "preds": [r.predictions.get(sid) for r in gruns], "scores": [r.scores.get(sid) for r in gruns],
        })
    return Gallery(benchmark, task, SCORE_NAMES.get(task, "score"), gruns, samples, notes)


def _natural(text: str) -> tuple:
    import re

    return tuple(int(p) if p.isdigit() else p for p in re.split(r"(\d+)", text))
