"""``scaling data convert``: official annotations + media folder → webdataset shards + index.json.

Pipeline per split: parse the official file (:mod:`scaling.data.annotations`), find each item's media
in the media folder (by relative path, file name or stem: mirrors lay files out differently), report
missing media (count + examples; an empty result is an error, never an empty shard set), merge
duplicate inputs of training splits (same media + same prompt → one sample with all answers),
shuffle training splits (seeded, so every shard is a random sample of the split), then write shards
of ``--samples-per-shard`` samples (default 5000, ~1 GB of COCO-sized images) or ``--max-shard-bytes``
with a progress bar, and record them in ``index.json``.

Media as stored: images keep their original bytes (``--max-side N`` re-encodes larger ones to JPEG
q=90, which also shrinks VQA shards where one image serves several questions); audio is decoded and
stored as 16 kHz mono 16-bit FLAC (any input format FFmpeg reads); videos keep their original file,
or ``--video-frames N`` stores N uniformly spaced JPEG frames instead (faster to load, fixed frames).
"""

from __future__ import annotations

import dataclasses
import io
import logging
import os
import random
from collections.abc import Iterable
from concurrent.futures import ProcessPoolExecutor
from typing import Any

from scaling.config.base import ConfigError
from scaling.data.annotations import PARSERS, Dataset, Item
from scaling.data.shards import (
    AUDIO_EXTS,
    DEFAULT_MAX_SHARD_BYTES,
    DEFAULT_SAMPLES_PER_SHARD,
    IMAGE_EXTS,
    VIDEO_EXTS,
    ShardSetWriter,
    sample_record,
    update_index,
)

log = logging.getLogger(__name__)
DATASETS = tuple(PARSERS)
MEDIA_SUFFIXES = IMAGE_EXTS + AUDIO_EXTS + VIDEO_EXTS + ("gif", "tif", "tiff")


class MediaIndex:
    """Finds media files under ``root`` by relative path, file name, or file stem."""

    def __init__(self, root: str):
        self.root = root
        self._by_name: dict[str, str] | None = None
        self._by_stem: dict[str, str] = {}

    def _scan(self) -> None:
        self._by_name = {}
        for dirpath, _, files in os.walk(self.root, followlinks=True):
            for f in files:
                path = os.path.join(dirpath, f)
                self._by_name.setdefault(f, path)
                stem, _, ext = f.rpartition(".")
                if stem and ext.lower() in MEDIA_SUFFIXES:
                    self._by_stem.setdefault(stem, path)

    def find(self, candidates: Iterable[str]) -> str | None:
        candidates = list(candidates)
        for c in candidates:
            if os.path.isabs(c) and os.path.isfile(c):
                return c
            p = os.path.join(self.root, c)
            if os.path.isfile(p):
                return p
        if self._by_name is None:
            self._scan()
        for c in candidates:
            base = os.path.basename(c)
            if base in self._by_name:
                return self._by_name[base]
            if base in self._by_stem:
                return self._by_stem[base]
        return None


@dataclasses.dataclass
class MediaOptions:
    modality: str
    max_side: int | None = None
    video_frames: int | None = None
    verify: bool = False


def _image_members(data: bytes, opts: MediaOptions) -> dict[str, bytes]:
    from PIL import Image

    img = Image.open(io.BytesIO(data))
    fmt = (img.format or "").upper()
    if opts.verify:
        img.load()
    ext = {"JPEG": "jpg", "PNG": "png", "WEBP": "webp", "BMP": "bmp"}.get(fmt)
    if ext and not (opts.max_side and max(img.size) > opts.max_side):
        return {ext: data}
    img = img.convert("RGB")
    if opts.max_side and max(img.size) > opts.max_side:
        scale = opts.max_side / max(img.size)
        img = img.resize((max(1, round(img.width * scale)), max(1, round(img.height * scale))), Image.BICUBIC)
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=90)
    return {"jpg": buf.getvalue()}


def _video_members(path: str, data: bytes, opts: MediaOptions) -> dict[str, bytes]:
    ext = path.rsplit(".", 1)[-1].lower() if "." in os.path.basename(path) else ""
    if opts.video_frames:
        from scaling.data.video import decode_video

        frames = decode_video(data, opts.video_frames, None, max_side=opts.max_side)
        out = {}
        for i, f in enumerate(frames):
            buf = io.BytesIO()
            f.convert("RGB").save(buf, format="JPEG", quality=90)
            out[f"f{i:03d}.jpg"] = buf.getvalue()
        return out
    if opts.verify:
        import av

        with av.open(io.BytesIO(data)) as c:
            if not c.streams.video:
                raise ValueError("no video stream")
            next(c.decode(video=0))
    return {ext if ext in VIDEO_EXTS else "mp4": data}


def load_media(path: str, opts: MediaOptions) -> dict[str, bytes]:
    """Read one media file and return the shard members for it (see the module docstring)."""
    with open(path, "rb") as fh:
        data = fh.read()
    if not data:
        raise ValueError("empty file")
    if opts.modality == "image":
        return _image_members(data, opts)
    if opts.modality == "audio":
        from scaling.data.audio import decode_audio, encode_flac

        wav = decode_audio(data)
        return {"flac": encode_flac(wav)}
    if opts.modality == "video":
        return _video_members(path, data, opts)
    raise ValueError(f"unknown modality {opts.modality!r}")


def _load_safe(args: tuple[str, MediaOptions]) -> tuple[dict[str, bytes] | None, str | None]:
    path, opts = args
    try:
        return load_media(path, opts), None
    except Exception as err:  # noqa: BLE001 - a bad file is reported, never fatal
        return None, f"{path}: {type(err).__name__}: {err}"


def _bounded_map(pool: ProcessPoolExecutor, jobs: list, window: int):
    """``pool.map`` in windows, so that finished media never pile up in memory ahead of the writer."""
    for start in range(0, len(jobs), window):
        yield from pool.map(_load_safe, jobs[start : start + window], chunksize=8)


def _guess_modality(paths: Iterable[str]) -> str:
    for p in paths:
        ext = p.rsplit(".", 1)[-1].lower()
        if ext in IMAGE_EXTS or ext in ("gif", "tif", "tiff"):
            return "image"
        if ext in AUDIO_EXTS:
            return "audio"
        if ext in VIDEO_EXTS:
            return "video"
    raise ConfigError("cannot tell the modality from the media file names; pass --modality image|audio|video")


def group_duplicates(items: list[tuple[Item, str]]) -> list[tuple[Item, str]]:
    """Merge items with the same media file and the same prompt/question into one (all answers kept)."""
    merged: dict[tuple, tuple[Item, str]] = {}
    for item, path in items:
        key = (os.path.realpath(path), item.prompt, item.question)
        if key in merged:
            first = merged[key][0]
            first.answers.extend(item.answers)
            first.ids = (first.ids or [first.id]) + (item.ids or [item.id])
        else:
            merged[key] = (dataclasses.replace(item, answers=list(item.answers), ids=list(item.ids or [item.id])), path)
    return list(merged.values())


def index_dir_for(out: str) -> str:
    prefix = out.split("{split}")[0]
    return os.path.dirname(prefix) or "."


def convert(
    dataset: str,
    out: str,
    *,
    annotations: str | None = None,
    questions: str | None = None,
    media: str | None = None,
    split: str | None = None,
    mapping: str | None = None,
    task: str | None = None,
    modality: str | None = None,
    samples_per_shard: int = DEFAULT_SAMPLES_PER_SHARD,
    max_shard_bytes: int = DEFAULT_MAX_SHARD_BYTES,
    max_side: int | None = None,
    video_frames: int | None = None,
    workers: int = 0,
    seed: int = 0,
    shuffle: bool = True,
    group: str = "auto",
    limit: int | None = None,
    verify: bool = False,
    progress: bool = True,
    echo=print,
) -> dict[str, dict[str, Any]]:
    """Convert ``dataset`` (one of :data:`DATASETS`) to shards at ``out``; returns a summary per split."""
    if dataset not in PARSERS:
        from scaling.config.base import suggest

        raise ConfigError(f"unknown dataset {dataset!r}{suggest(dataset, DATASETS)}; valid: {list(DATASETS)}")
    if "%" not in out:
        raise ConfigError(f"--out {out!r} needs a %d field for the shard number, e.g. 'shards/{dataset}/{{split}}-%06d.tar'")
    ds: Dataset = PARSERS[dataset](annotations=annotations, questions=questions, split=split, mapping=mapping,
                                   task=task, modality=modality)
    if ds.skipped:
        echo(f"{dataset}: {len(ds.skipped)} record(s) skipped, their answers are not strings (null, lists, objects "
             f"are never references): {'; '.join(ds.skipped[:5])}{' ...' if len(ds.skipped) > 5 else ''}")
    if media is None:
        if dataset != "jsonl":
            raise ConfigError(f"{dataset}: pass the media folder with --media DIR (the images/audio/videos as downloaded)")
        media = os.path.dirname(os.path.abspath(annotations))
    if not os.path.isdir(media):
        raise ConfigError(f"{dataset}: media folder {media!r} does not exist")
    finder = MediaIndex(media)
    splits: dict[str, list[Item]] = {}
    for item in ds.items:
        splits.setdefault(item.split, []).append(item)
    if not splits:
        raise ConfigError(f"{dataset}: the annotations hold no item{f' of split {split!r}' if split else ''}")
    if len(splits) > 1 and "{split}" not in out:
        raise ConfigError(f"{dataset}: the annotations hold splits {sorted(splits)}; put '{{split}}' in --out "
                          f"(e.g. shards/{dataset}/{{split}}-%06d.tar)")
    index_dir = index_dir_for(out)
    summary: dict[str, dict[str, Any]] = {}
    for sp, items in splits.items():
        found: list[tuple[Item, str]] = []
        missing: list[str] = []
        for item in items:
            path = finder.find(item.media)
            if path is None:
                missing.append(item.media[0])
            else:
                found.append((item, path))
        if missing:
            echo(f"{dataset}/{sp}: {len(missing)} of {len(items)} items have no media under {media} "
                 f"(e.g. {', '.join(missing[:3])}); they are skipped")
        if not found:
            raise ConfigError(f"{dataset}/{sp}: none of the {len(items)} items has its media under {media!r} "
                              f"(looked for e.g. {items[0].media[:3]}); check --media. No shard was written.")
        mod = ds.modality or _guess_modality(p for _, p in found[:50])
        do_group = group == "yes" or (group == "auto" and sp.startswith("train"))
        if do_group:
            n_before = len(found)
            found = group_duplicates(found)
            if len(found) < n_before:
                echo(f"{dataset}/{sp}: merged {n_before - len(found)} duplicate inputs (same media and prompt)")
        if shuffle and sp.startswith("train"):
            random.Random(f"{seed}:{dataset}:{sp}").shuffle(found)
        if limit:
            found = found[:limit]
        summary[sp] = _write_split(ds, sp, found, out, index_dir, mod, samples_per_shard, max_shard_bytes,
                                   MediaOptions(mod, max_side, video_frames, verify), workers, progress, len(missing),
                                   {"annotations": annotations, "questions": questions, "media": media}, echo)
    return summary


def _write_split(ds: Dataset, split: str, found: list[tuple[Item, str]], out: str, index_dir: str, modality: str,
                 samples_per_shard: int, max_bytes: int, opts: MediaOptions, workers: int, progress: bool,
                 n_missing: int, source: dict, echo) -> dict[str, Any]:
    from tqdm import tqdm

    pattern = out.replace("{split}", split)
    writer = ShardSetWriter(pattern, index_dir, samples_per_shard, max_bytes)
    unreadable: list[str] = []
    n_answers = 0
    jobs = [(path, opts) for _, path in found]
    bar = tqdm(total=len(jobs), desc=f"{ds.name}/{split}", unit="sample", disable=not progress)
    pool = ProcessPoolExecutor(workers) if workers > 1 else None
    try:
        results = _bounded_map(pool, jobs, window=max(1, workers) * 64) if pool else map(_load_safe, jobs)
        for i, ((item, path), (members, error)) in enumerate(zip(found, results)):
            bar.update(1)
            if members is None:
                unreadable.append(error)
                continue
            rec = sample_record(
                item.id, ds.task, ds.name, split, item.answers, prompt=item.prompt, question=item.question,
                ids=item.ids, source=os.path.relpath(path, source["media"]), **item.meta,
            )
            writer.write(f"{split}-{i:09d}", rec, members)
            n_answers += len(item.answers)
        entries = writer.close()
    except BaseException:
        writer.abort()
        raise
    finally:
        bar.close()
        if pool:
            pool.shutdown()
    if unreadable:
        echo(f"{ds.name}/{split}: {len(unreadable)} media files could not be read and are skipped "
             f"(e.g. {'; '.join(unreadable[:3])})")
    if not entries or sum(e.num_samples for e in entries) == 0:
        raise ConfigError(f"{ds.name}/{split}: no readable media ({len(unreadable)} unreadable); no shard was written")
    n = sum(e.num_samples for e in entries)
    entry = {
        "dataset": ds.name, "task": ds.task, "modality": modality, "num_samples": n, "num_answers": n_answers,
        "samples_per_shard": samples_per_shard, "missing_media": n_missing, "unreadable_media": len(unreadable),
        "shards": [dataclasses.asdict(e) for e in entries],
        "source": {k: (os.path.abspath(v) if v else None) for k, v in source.items()},
    }
    if opts.video_frames:
        entry["video_frames"] = opts.video_frames
    path = update_index(index_dir, split, entry, writer.samples)
    echo(f"{ds.name}/{split}: {n} samples, {n_answers} answers in {len(entries)} shards "
         f"({sum(e.bytes for e in entries) / 1e6:.1f} MB) → {path}")
    return {"num_samples": n, "shards": len(entries), "missing": n_missing, "unreadable": len(unreadable), "index": path}
