"""``scaling data inspect``: what is in a shard set (counts, modalities, answers, lengths, media sizes).

Reads every sample's json and member sizes (media bytes are read only for the first
``--decode`` samples, to report image sizes / audio durations / video frames / feature shapes),
compares the counts with ``index.json``, and prints a few samples. ``--write-index`` writes an
``index.json`` (+ ``<split>-samples.json``) for shards that have none (e.g. made by other tools).
"""

from __future__ import annotations

import io
import os
import statistics
from typing import Any

import numpy as np

from scaling.config.base import ConfigError
from scaling.data.shards import (
    INDEX_NAME,
    ShardRef,
    expand_urls,
    is_local,
    iter_members,
    local_path,
    media_kind,
    read_json,
    read_record,
    split_member,
    text_length,
    update_index,
)


def _stats(values: list[float]) -> str:
    if not values:
        return "-"
    return f"min {min(values):g}  mean {statistics.fmean(values):.3g}  max {max(values):g}"


def _media_info(kind: str, ext: str, data: bytes) -> str:
    try:
        if kind == "image":
            from PIL import Image

            img = Image.open(io.BytesIO(data))
            img.load()  # a full decode: truncated/corrupt files are reported
            from scaling.data.augment import WIDE_MODES

            mode = "" if img.mode in ("RGB", "L") else f" {img.mode}" + (
                " (16-bit, scaled to 8 bits)" if img.mode in WIDE_MODES and img.mode != "F" else "")
            return f"{img.width}x{img.height}{mode}"
        if kind == "audio":
            from scaling.data.audio import decode_audio

            wav = decode_audio(data)
            bad = int((~np.isfinite(np.asarray(wav))).sum())
            if bad:  # the loaders skip it as a bad sample
                return f"UNREADABLE ({bad} non-finite audio values: NaN or inf)"
            return f"{len(wav) / 16000:.2f}s"
        if kind == "video":
            import av

            with av.open(io.BytesIO(data)) as c:
                s = c.streams.video[0]
                return f"{s.frames} frames {s.width}x{s.height}"
        if kind == "features":
            from scaling.data.decode import load_features

            arr = load_features({ext: data})
            return "x".join(map(str, arr.shape)) + f" {arr.dtype}"
    except Exception as err:  # noqa: BLE001
        return f"UNREADABLE ({type(err).__name__}: {err})"
    return ""


def scan_shards(shards: list[ShardRef], decode: int = 20, tokenizer=None, max_samples: int | None = None) -> dict[str, Any]:
    """Per-sample statistics over ``shards`` (see the module docstring)."""
    n = 0
    per_shard: dict[str, int] = {}
    kinds: dict[str, int] = {}
    n_answers, q_words, a_words, q_tokens, media_bytes = [], [], [], [], []
    infos: dict[str, list[str]] = {}
    examples: list[dict[str, Any]] = []
    unreadable: list[str] = []
    bad_samples: list[str] = []
    tasks: dict[str, int] = {}
    samples_file: dict[str, dict[str, list]] = {}
    for shard in shards:
        count = 0
        key = None
        cur: dict[str, Any] = {}
        ids, lens = [], []

        def finish():
            nonlocal n
            if not cur:
                return
            rec = cur.get("json") or {}
            ids.append(str(rec.get("id", cur["__key__"])))
            lens.append(text_length(rec) if rec else 0)
            if cur.get("bad"):  # skipped and counted by the loaders: reported, left out of the statistics
                bad_samples.append(f"{shard.url}:{cur['__key__']}: {cur['bad']}")
                return
            tasks[rec.get("task", "?")] = tasks.get(rec.get("task", "?"), 0) + 1
            answers = rec.get("answers", [])
            n_answers.append(len(answers))
            prompt = rec.get("question") or rec.get("prompt") or ""
            q_words.append(len(prompt.split()))
            a_words.extend(len(a.split()) for a in answers)
            if tokenizer is not None:
                q_tokens.append(len(tokenizer(prompt)["input_ids"]))
            media_bytes.append(cur.get("_media_bytes", 0))
            for kind in cur["_kinds"]:
                kinds[kind] = kinds.get(kind, 0) + 1
            if len(examples) < 3:
                examples.append({"key": cur["__key__"], "id": rec.get("id"), "prompt": prompt, "answers": answers[:5],
                                 "n_answers": len(answers), "members": sorted(cur["_exts"])})

        try:
            for tar, info in iter_members(shard.url, lambda msg, url=shard.url: unreadable.append(f"{url}: {msg}")):
                k, ext = split_member(info.name)
                if k is None:
                    continue
                if k != key:
                    finish()
                    if max_samples is not None and n >= max_samples:
                        break
                    key, cur = k, {"__key__": k, "_exts": [], "_kinds": set(), "_media_bytes": 0}
                    count += 1
                    n += 1
                cur["_exts"].append(ext)
                kind = media_kind(ext)
                if ext == "json":
                    cur["json"], cur["bad"] = read_record({"json": tar.extractfile(info).read(), "__key__": k})
                elif kind:
                    cur["_kinds"].add(kind)
                    cur["_media_bytes"] += info.size
                    if n <= decode and (kind != "frames" or not infos.get("frames")):
                        desc = _media_info("image" if kind == "frames" else kind, ext, tar.extractfile(info).read())
                        infos.setdefault(kind, []).append(desc)
                        if desc.startswith("UNREADABLE"):
                            unreadable.append(f"{shard.url}:{k}.{ext} {desc}")
            finish()
        except Exception as err:  # noqa: BLE001 - report, keep scanning the other shards
            unreadable.append(f"{shard.url}: cannot read ({type(err).__name__}: {err})")
        per_shard[shard.url] = count
        samples_file[shard.name] = {"ids": ids, "len": lens}
        if max_samples is not None and n >= max_samples:
            break
    return {
        "num_samples": n, "per_shard": per_shard, "media": kinds, "tasks": tasks, "answers_per_sample": n_answers,
        "prompt_words": q_words, "answer_words": a_words, "prompt_tokens": q_tokens, "media_bytes": media_bytes,
        "media_info": infos, "examples": examples, "problems": unreadable, "samples_file": samples_file,
        "bad_samples": bad_samples,
    }


def _splits_of(source: str, split: str | None) -> dict[str, tuple[list[ShardRef], dict | None, str | None]]:
    """{split: (shards, index entry or None, index path)} for a folder/index.json or a URL pattern."""
    ref, _, sub = source.partition("#")
    split = split or sub or None
    if ref.endswith(".json") or (is_local(ref) and os.path.isdir(local_path(ref))):
        path = os.path.join(local_path(ref), INDEX_NAME) if is_local(ref) and os.path.isdir(local_path(ref)) else ref
        if is_local(path) and not os.path.exists(local_path(path)):
            tars = sorted(f for f in os.listdir(local_path(ref)) if f.endswith(".tar")) if os.path.isdir(local_path(ref)) else []
            if not tars:
                raise ConfigError(f"{ref}: no index.json and no .tar shard")
            return {split or "train": ([ShardRef(os.path.join(ref, t), t, -1) for t in tars], None, None)}
        idx = read_json(path, "index")
        out = {}
        base = os.path.dirname(local_path(path)) if is_local(path) else path.rsplit("/", 1)[0]
        for name, entry in idx.get("splits", {}).items():
            if split and name != split:
                continue
            shards = [ShardRef(os.path.join(base, s["name"]) if is_local(path) else f"{base}/{s['name']}", s["name"],
                               int(s["num_samples"])) for s in entry["shards"]]
            out[name] = (shards, entry, path)
        if not out:
            raise ConfigError(f"{path}: no split {split!r}; it has {sorted(idx.get('splits', {}))}")
        return out
    urls = expand_urls(ref)
    return {split or "train": ([ShardRef(u, os.path.basename(u), -1) for u in urls], None, None)}


def inspect_shards(source: str, split: str | None = None, decode: int = 20, show: int = 3, tokenizer=None,
                   max_samples: int | None = None, write_index: bool = False, echo=print) -> dict[str, Any]:
    """Print (via ``echo``) and return statistics per split of ``source``."""
    report = {}
    for name, (shards, entry, index_path) in _splits_of(source, split).items():
        st = scan_shards(shards, decode, tokenizer, max_samples)
        report[name] = st
        echo(f"== split {name}: {st['num_samples']} samples in {len(shards)} shards" +
             (f" (index: {entry.get('dataset')} / {entry.get('task')} / {entry.get('modality')})" if entry else " (no index)"))
        if entry is not None and max_samples is None:
            want = sum(s.num_samples for s in shards)
            if want != st["num_samples"]:
                st["problems"].append(f"the index says {want} samples, the shards hold {st['num_samples']}")
            for s in shards:
                if st["per_shard"].get(s.url, s.num_samples) != s.num_samples:
                    st["problems"].append(f"{s.name}: index {s.num_samples} samples, found {st['per_shard'][s.url]}")
        echo(f"  tasks: {st['tasks']}   media members: {st['media'] or 'none'}")
        echo(f"  answers per sample: {_stats(st['answers_per_sample'])}")
        echo(f"  prompt/question words: {_stats(st['prompt_words'])}")
        if st["prompt_tokens"]:
            echo(f"  prompt tokens: {_stats(st['prompt_tokens'])}")
        echo(f"  answer words: {_stats(st['answer_words'])}")
        echo(f"  media bytes per sample: {_stats(st['media_bytes'])}")
        for kind, values in st["media_info"].items():
            echo(f"  {kind} (first {len(values)}): {', '.join(values[:8])}{' ...' if len(values) > 8 else ''}")
        if entry and entry.get("features"):
            f = entry["features"]
            echo(f"  cached features: encoder {f.get('encoder')}, shape {f.get('shape')}, views {f.get('views')}")
        if st["bad_samples"]:
            echo(f"  BAD SAMPLES ({len(st['bad_samples'])}, skipped and counted by the loaders):")
            for line in st["bad_samples"][:20]:
                echo(f"    {line}")
            if len(st["bad_samples"]) > 20:
                echo(f"    ... {len(st['bad_samples']) - 20} more")
        if st["problems"]:
            echo(f"  PROBLEMS ({len(st['problems'])}): " + "; ".join(st["problems"][:5]))
        for ex in st["examples"][:show]:
            echo(f"  sample {ex['key']}: id={ex['id']} prompt={ex['prompt']!r} answers({ex['n_answers']})={ex['answers']} "
                 f"members={ex['members']}")
        if write_index:
            if entry is not None:
                echo(f"  {index_path} exists; not rewritten")
            elif not all(is_local(s.url) for s in shards):
                echo("  --write-index needs local shards")
            else:
                index_dir = os.path.dirname(os.path.abspath(local_path(shards[0].url)))
                modality = next((k for k in ("image", "audio", "video", "features") if k in st["media"]), None)
                if modality is None and "frames" in st["media"]:
                    modality = "video"
                new_entry = {
                    "dataset": None, "task": max(st["tasks"], key=st["tasks"].get) if st["tasks"] else None,
                    "modality": modality, "num_samples": st["num_samples"],
                    "shards": [{"name": os.path.relpath(os.path.abspath(local_path(s.url)), index_dir),
                                "num_samples": st["per_shard"].get(s.url, 0),
                                "bytes": os.path.getsize(local_path(s.url))} for s in shards],
                }
                samples = {e["name"]: st["samples_file"].get(s.name, {"ids": [], "len": []})
                           for e, s in zip(new_entry["shards"], shards)}
                echo(f"  wrote {update_index(index_dir, name, new_entry, samples)}")
    return report
