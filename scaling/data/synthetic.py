"""Tiny synthetic datasets written in each official annotation format (tests, smoke runs, the demo).

Images are coloured shapes on a background, audio clips are tones, videos are moving squares; the
captions/answers describe them with words of the tiny word-level tokenizer. Every writer returns the
keyword arguments :func:`scaling.data.converters.convert` takes (``annotations``, ``questions``,
``media``, ...). Nothing is downloaded.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import os
import random

import numpy as np
from PIL import Image, ImageDraw

COLORS = {"red": (220, 30, 30), "green": (30, 180, 30), "blue": (30, 60, 220), "yellow": (230, 220, 40),
          "purple": (140, 40, 160), "orange": (240, 140, 20), "white": (245, 245, 245), "black": (10, 10, 10)}
SHAPES = ("circle", "square", "triangle")


def make_image(rng: random.Random, size: int = 48) -> tuple[Image.Image, str, str]:
    """A shape of a random colour on a gray background → (image, colour, shape)."""
    color = rng.choice(list(COLORS))
    shape = rng.choice(SHAPES)
    img = Image.new("RGB", (size + rng.randrange(0, 16), size), (128, 128, 128))
    d = ImageDraw.Draw(img)
    x0, y0 = rng.randrange(0, size // 3), rng.randrange(0, size // 3)
    x1, y1 = x0 + size // 2, y0 + size // 2
    if shape == "circle":
        d.ellipse((x0, y0, x1, y1), fill=COLORS[color])
    elif shape == "square":
        d.rectangle((x0, y0, x1, y1), fill=COLORS[color])
    else:
        d.polygon([(x0, y1), (x1, y1), ((x0 + x1) // 2, y0)], fill=COLORS[color])
    return img, color, shape


def _captions(color: str, shape: str) -> list[str]:
    return [f"a {color} {shape}", f"a picture of a {color} {shape}", f"the {shape} is {color}",
            f"a {shape} in the image", f"an image of a {color} {shape}"]


def _save(img: Image.Image, path: str) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    img.save(path, quality=90)


def _dump(obj, path: str) -> str:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as fh:
        json.dump(obj, fh)
    return path


def write_coco(root: str, n_images: int = 30, seed: int = 0, splits=("train", "restval", "val", "test")) -> dict:
    """Karpathy ``dataset_coco.json`` + ``images/{train2014,val2014}/COCO_*.jpg``."""
    rng = random.Random(seed)
    images = []
    for i in range(n_images):
        sp = splits[i % len(splits)]
        folder = "train2014" if sp == "train" else "val2014"
        cocoid = 100000 + i
        filename = f"COCO_{folder}_{cocoid:012d}.jpg"
        img, color, shape = make_image(rng)
        _save(img, os.path.join(root, "images", folder, filename))
        sents = [{"raw": c, "tokens": c.split(), "imgid": i, "sentid": 5 * i + j} for j, c in enumerate(_captions(color, shape))]
        images.append({"filepath": folder, "filename": filename, "imgid": i, "split": sp, "sentences": sents,
                       "cocoid": cocoid, "sentids": [s["sentid"] for s in sents]})
    ann = _dump({"images": images, "dataset": "coco"}, os.path.join(root, "dataset_coco.json"))
    return {"annotations": ann, "media": os.path.join(root, "images")}


def _vqa_qa(rng: random.Random, color: str, shape: str) -> list[tuple[str, list[str]]]:
    other = rng.choice([c for c in COLORS if c != color])
    return [
        ("what color is the shape?", [color] * 8 + [other, color]),
        (f"is the shape {other}?", ["no"] * 9 + ["yes"]),
        ("what shape is in the picture?", [shape] * 10),
    ]


def write_vqa(root: str, n_images: int = 10, seed: int = 0, subtype: str = "train2014", name: str = "vqav2",
              with_answers: bool = True, duplicate_question: bool = True) -> dict:
    """VQAv2 / OK-VQA questions + annotations JSON and ``images/<subtype>/COCO_<subtype>_<id>.jpg``.

    With ``duplicate_question`` the first image gets the same question twice (two question ids),
    as happens in VQAv2: training merges them into one sample with 20 answers."""
    rng = random.Random(seed)
    questions, annotations = [], []
    for i in range(n_images):
        image_id = 200000 + i
        img, color, shape = make_image(rng)
        _save(img, os.path.join(root, "images", subtype, f"COCO_{subtype}_{image_id:012d}.jpg"))
        qa = _vqa_qa(rng, color, shape)
        if duplicate_question and i == 0:
            qa.append((qa[0][0], [color] * 10))
        for j, (q, answers) in enumerate(qa):
            qid = image_id * 1000 + j
            questions.append({"image_id": image_id, "question": q, "question_id": qid})
            annotations.append({"question_type": "what", "multiple_choice_answer": answers[0], "image_id": image_id,
                                "answer_type": "other", "question_id": qid,
                                "answers": [{"answer": a, "answer_confidence": "yes", "answer_id": k + 1} for k, a in enumerate(answers)]})
    prefix = "v2_" if name == "vqav2" else ""
    q = _dump({"info": {}, "task_type": "Open-Ended", "data_type": "mscoco", "license": {}, "data_subtype": subtype,
               "questions": questions}, os.path.join(root, f"{prefix}OpenEnded_mscoco_{subtype}_questions.json"))
    out = {"questions": q, "media": os.path.join(root, "images")}
    if with_answers:
        out["annotations"] = _dump({"info": {}, "license": {}, "data_subtype": subtype, "annotations": annotations},
                                   os.path.join(root, f"{prefix}mscoco_{subtype}_annotations.json"))
    return out


def write_gqa(root: str, n_images: int = 8, seed: int = 0, split: str = "train") -> dict:
    rng = random.Random(seed)
    data = {}
    for i in range(n_images):
        img, color, shape = make_image(rng)
        image_id = f"n{300000 + i}"
        _save(img, os.path.join(root, "images", f"{image_id}.jpg"))
        for j, (q, answers) in enumerate(_vqa_qa(rng, color, shape)):
            data[f"{i:05d}{j}"] = {"imageId": image_id, "question": q, "answer": answers[0], "fullAnswer": f"it is {answers[0]}.",
                                   "isBalanced": True, "types": {}, "semantic": [], "annotations": {}}
    return {"questions": _dump(data, os.path.join(root, f"{split}_balanced_questions.json")), "media": os.path.join(root, "images")}


def write_aokvqa(root: str, n_images: int = 8, seed: int = 0, split: str = "train") -> dict:
    rng = random.Random(seed)
    rows = []
    for i in range(n_images):
        image_id = 400000 + i
        img, color, shape = make_image(rng)
        _save(img, os.path.join(root, "coco", f"{split}2017", f"{image_id:012d}.jpg"))
        rows.append({"split": split, "image_id": image_id, "question_id": f"q{i:04d}aok", "question": "what color is the shape?",
                     "choices": [color, "red", "blue", "green"], "correct_choice_idx": 0, "direct_answers": [color] * 10,
                     "difficult_direct_answer": False, "rationales": [f"the shape is {color}."]})
    return {"annotations": _dump(rows, os.path.join(root, f"aokvqa_v1p0_{split}.json")), "media": os.path.join(root, "coco")}


def write_textvqa(root: str, n_images: int = 8, seed: int = 0, split: str = "train") -> dict:
    rng = random.Random(seed)
    rows = []
    for i in range(n_images):
        img, color, shape = make_image(rng)
        image_id = f"{rng.getrandbits(64):016x}"
        _save(img, os.path.join(root, f"{split}_images", f"{image_id}.jpg"))
        for j, (q, answers) in enumerate(_vqa_qa(rng, color, shape)[:2]):
            rows.append({"question": q, "image_id": image_id, "image_classes": [], "image_width": img.width,
                         "image_height": img.height, "answers": answers, "question_tokens": q.split(),
                         "question_id": 1000 * i + j, "set_name": split})
    ann = _dump({"dataset_type": split, "dataset_name": "textvqa", "dataset_version": "0.5.1", "data": rows},
                os.path.join(root, f"TextVQA_0.5.1_{split}.json"))
    return {"annotations": ann, "media": os.path.join(root, f"{split}_images")}


def write_textcaps(root: str, n_images: int = 8, seed: int = 0, split: str = "train") -> dict:
    rng = random.Random(seed)
    rows = []
    for i in range(n_images):
        img, color, shape = make_image(rng)
        image_id = f"{rng.getrandbits(64):016x}"
        _save(img, os.path.join(root, "images", split, f"{image_id}.jpg"))
        caps = _captions(color, shape)
        for j, c in enumerate(caps):
            rows.append({"image_id": image_id, "image_classes": [], "image_width": img.width, "image_height": img.height,
                         "set_name": split, "image_name": image_id, "image_path": f"{split}/{image_id}.jpg",
                         "caption_id": 5 * i + j, "caption_str": c, "caption_tokens": c.split(), "reference_strs": caps,
                         "reference_tokens": [x.split() for x in caps]})
    ann = _dump({"dataset_type": split, "dataset_name": "textcaps", "dataset_version": "0.1", "data": rows},
                os.path.join(root, f"TextCaps_0.1_{split}.json"))
    return {"annotations": ann, "media": os.path.join(root, "images")}


def make_tone(rng: random.Random, seconds: float = 1.0, rate: int = 16000) -> tuple[np.ndarray, str]:
    high = rng.random() < 0.5
    freq = rng.uniform(1500, 3000) if high else rng.uniform(200, 500)
    t = np.arange(int(seconds * rate)) / rate
    return (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32), ("high" if high else "low")


def write_audiocaps(root: str, n_clips: int = 8, seed: int = 0, split: str = "train", captions_per_clip: int = 1,
                    rate: int = 22050, fmt: str = "wav") -> dict:
    """Official CSV ``audiocap_id,youtube_id,start_time,caption`` + ``audio/<youtube_id>.<fmt>``."""
    import soundfile as sf

    rng = random.Random(seed)
    os.makedirs(os.path.join(root, "audio"), exist_ok=True)
    rows = []
    for i in range(n_clips):
        wav, pitch = make_tone(rng, 1.0, rate)
        ytid = f"yt{i:04d}{rng.getrandbits(16):04x}"
        sf.write(os.path.join(root, "audio", f"{ytid}.{fmt}"), wav, rate)
        for j in range(captions_per_clip):
            rows.append({"audiocap_id": str(1000 + captions_per_clip * i + j), "youtube_id": ytid, "start_time": "30",
                         "caption": f"a {pitch} tone" if j == 0 else f"a {pitch} sound"})
    path = os.path.join(root, f"{split}.csv")
    with open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, ["audiocap_id", "youtube_id", "start_time", "caption"])
        w.writeheader()
        w.writerows(rows)
    return {"annotations": path, "media": os.path.join(root, "audio")}


def make_video(rng: random.Random, frames: int = 12, size: int = 32) -> tuple[list[np.ndarray], str, str]:
    color = rng.choice(["red", "green", "blue", "yellow"])
    up = rng.random() < 0.5
    out = []
    for t in range(frames):
        f = np.full((size, size, 3), 100, np.uint8)
        y = (size - 8) * (frames - 1 - t) // max(frames - 1, 1) if up else (size - 8) * t // max(frames - 1, 1)
        f[y : y + 8, 12:20] = COLORS[color]
        out.append(f)
    return out, color, "up" if up else "down"


def _write_video(path: str, frames, fmt: str = "mp4") -> None:
    from scaling.data.video import encode_video

    os.makedirs(os.path.dirname(path), exist_ok=True)
    if fmt == "mp4":
        data = encode_video(frames)
    else:
        import io

        import av

        buf = io.BytesIO()
        with av.open(buf, "w", format=fmt) as c:
            s = c.add_stream("mpeg4", rate=10)
            s.width, s.height, s.pix_fmt = frames[0].shape[1], frames[0].shape[0], "yuv420p"
            for f in frames:
                for p in s.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                    c.mux(p)
            for p in s.encode():
                c.mux(p)
        data = buf.getvalue()
    with open(path, "wb") as fh:
        fh.write(data)


def write_msrvtt(root: str, n_videos: int = 6, seed: int = 0) -> dict:
    """``train_val_videodatainfo.json`` (videos + sentences) + ``videos/video<N>.mp4``."""
    rng = random.Random(seed)
    videos, sentences = [], []
    for i in range(n_videos):
        frames, color, move = make_video(rng)
        vid = f"video{i}"
        _write_video(os.path.join(root, "videos", f"{vid}.mp4"), frames)
        videos.append({"category": 0, "url": "", "video_id": vid, "start time": 0.0, "end time": 1.2,
                       "split": "train" if i % 3 else "validate", "id": i})
        for j, c in enumerate([f"a {color} square moving {move}", f"a square is moving {move}"]):
            sentences.append({"caption": c, "video_id": vid, "sen_id": 2 * i + j})
    ann = _dump({"info": {}, "videos": videos, "sentences": sentences}, os.path.join(root, "train_val_videodatainfo.json"))
    return {"annotations": ann, "media": os.path.join(root, "videos")}


def write_video_qa(root: str, n_videos: int = 6, seed: int = 0, split: str = "train", name: str = "msrvtt-qa") -> dict:
    """MSRVTT-QA (``video<N>.mp4``) or MSVD-QA (``<youtube name>.avi`` + ``youtube_mapping.txt``) QA JSON."""
    rng = random.Random(seed)
    rows, mapping = [], []
    for i in range(n_videos):
        frames, color, move = make_video(rng)
        if name == "msvd-qa":
            yt = f"yt{i:03d}_{rng.randrange(100)}_{rng.randrange(100, 200)}"
            mapping.append(f"{yt} vid{i + 1}")
            _write_video(os.path.join(root, "videos", f"{yt}.avi"), frames, fmt="avi")
            vid = i + 1
        else:
            _write_video(os.path.join(root, "videos", f"video{i}.mp4"), frames)
            vid = i
        rows.append({"answer": color, "id": 2 * i, "question": "what color is the square?", "video_id": vid})
        rows.append({"answer": move, "id": 2 * i + 1, "question": "where is the square moving?", "video_id": vid})
    out = {"annotations": _dump(rows, os.path.join(root, f"{split}_qa.json")), "media": os.path.join(root, "videos")}
    if mapping:
        path = os.path.join(root, "youtube_mapping.txt")
        with open(path, "w") as fh:
            fh.write("\n".join(mapping) + "\n")
        out["mapping"] = path
    return out


def write_jsonl(root: str, n: int = 12, seed: int = 0, split: str = "train", task: str = "vqa") -> dict:
    """Generic JSON lines (image media, relative paths), one record per question."""
    rng = random.Random(seed)
    lines = []
    for i in range(n):
        img, color, shape = make_image(rng)
        rel = f"imgs/{i:04d}.png"
        _save(img, os.path.join(root, rel))
        if task == "vqa":
            lines.append({"id": f"rec{i}", "image": rel, "question": "what color is the shape?", "answers": [color]})
        else:
            lines.append({"id": f"rec{i}", "image": rel, "captions": _captions(color, shape)[:2]})
    path = os.path.join(root, f"{split}.jsonl")
    with open(path, "w") as fh:
        for line in lines:
            fh.write(json.dumps(line) + "\n")
    return {"annotations": path, "media": root}


WRITERS = {
    "coco": write_coco,
    "vqav2": write_vqa,
    "okvqa": lambda root, **kw: write_vqa(root, name="okvqa", **kw),
    "gqa": write_gqa,
    "aokvqa": write_aokvqa,
    "textvqa": write_textvqa,
    "textcaps": write_textcaps,
    "audiocaps": write_audiocaps,
    "msrvtt": write_msrvtt,
    "msrvtt-qa": lambda root, **kw: write_video_qa(root, name="msrvtt-qa", **kw),
    "msvd-qa": lambda root, **kw: write_video_qa(root, name="msvd-qa", **kw),
    "jsonl": write_jsonl,
}


def write_shards(out_dir: str, sizes: list[int], split: str = "train", task: str = "caption", modality: str = "image",
                 seed: int = 0, dataset: str = "synthetic", image_size: int = 40, video_frames: int = 6,
                 prefix: str = "s") -> str:
    """Shards of exactly ``sizes`` samples each (uneven on purpose) + index.json; returns the folder.

    Sample ids are ``f"{prefix}{n:05d}"`` in writing order; captions/answers describe the media."""
    import io

    from scaling.data.audio import encode_flac
    from scaling.data.shards import ShardSetWriter, sample_record, update_index
    from scaling.data.video import encode_video

    rng = random.Random(seed)
    writer = ShardSetWriter(os.path.join(out_dir, f"{split}-%06d.tar"), out_dir, samples_per_shard=10**9)
    n = 0
    for size in sizes:
        for _ in range(size):
            if modality == "image":
                img, color, shape = make_image(rng, image_size)
                buf = io.BytesIO()
                img.save(buf, format="JPEG", quality=90)
                members, words = {"jpg": buf.getvalue()}, (color, shape)
            elif modality == "audio":
                wav, pitch = make_tone(rng, 0.5)
                members, words = {"flac": encode_flac(wav)}, (pitch, "tone")
            elif modality == "video":
                frames, color, move = make_video(rng, video_frames)
                members, words = {"mp4": encode_video(frames)}, (color, move)
            else:
                raise ValueError(modality)
            if task == "caption":
                rec = sample_record(f"{prefix}{n:05d}", "caption", dataset, split, [f"a {words[0]} {words[1]}", f"the {words[1]} is {words[0]}"])
            else:
                rec = sample_record(f"{prefix}{n:05d}", task, dataset, split, [words[0]] * 3 + [words[1]],
                                    question="what color is the shape?")
            writer.write(f"{split}-{n:09d}", rec, members)
            n += 1
        writer.roll()
    entries = writer.close()
    update_index(out_dir, split, {"dataset": dataset, "task": task, "modality": modality, "num_samples": n,
                                  "shards": [dataclasses.asdict(e) for e in entries]}, writer.samples)
    return out_dir
