"""Synthetic scenes for ``scaling demo``: coloured shapes (images) and tones (audio), with their text.

Everything is a pure function of a seed, so a dataset is reproducible bit for bit:

* :func:`sample_scene` draws 1–2 objects (6 colours × 3 shapes × 2 sizes) with a position (one
  object: left / right / top / bottom of the picture) or a relation (two objects: one to the left
  of / above the other);
* :func:`render_scene` draws it into a 64×64 RGB image (noisy gray background, jittered colours)
  together with a per-pixel object-class map, from which :func:`patch_labels` derives the per-patch
  labels used to pretrain the image encoder;
* :func:`captions` gives the three phrasings of a scene (all of them are references), and
  :func:`questions` its questions with answers (colour, shape, size, count, existence, position);
* :func:`sample_clip` / :func:`render_clip` do the same for audio: 1–2 tones (low / high pitch,
  beep = pure tone / buzz = square wave, short / long);
* :func:`lm_document` writes the text-only documents the tiny LM is pretrained on: 1–3 paraphrases
  of one scene joined by "." (the DEMO notes: this is what teaches a frozen LM to use earlier
  context, which the perceptual prefix then takes the place of), sometimes followed by a question
  and its answer in the VQA format (``question </a> answer``);
* :func:`write_dataset` renders a split layout to disk as media files + ``captions.jsonl`` /
  ``vqa.jsonl`` (+ ``audio.jsonl``): exactly the input of the public ``jsonl`` converter.
"""

from __future__ import annotations

import dataclasses
import json
import os
import random
from collections.abc import Iterable

import numpy as np

from scaling.common.io import atomic_write

IMAGE_SIZE = 64
PATCH = 16
COLORS: dict[str, tuple[int, int, int]] = {
    "red": (215, 35, 35), "green": (35, 170, 50), "blue": (40, 70, 220),
    "yellow": (235, 215, 40), "purple": (140, 50, 170), "orange": (245, 135, 25),
}
SHAPES = ("circle", "square", "triangle")
SIZES = ("small", "big")
RADIUS = {"small": (6, 8), "big": (11, 13)}  # half extent in pixels (inclusive range)
POSITIONS = ("left", "right", "top", "bottom")
RELATIONS = {"h": ("to the left of", "to the right of"), "v": ("above", "below")}
NUMBERS = ("zero", "one", "two", "three")
N_VQA_ANSWERS = 10  # VQA-style: ten (here identical) human answers per question

# object class of a patch / pixel: 0 = background, 1 + colour * len(SHAPES) + shape
N_OBJECT_CLASSES = 1 + len(COLORS) * len(SHAPES)

# audio
SAMPLE_RATE = 16000
PITCHES = {"low": (220.0, 330.0), "high": (880.0, 1320.0)}  # Hz range
TIMBRES = ("beep", "buzz")
LENGTHS = {"short": (0.08, 0.12), "long": (0.22, 0.26)}  # seconds
CLIP_SECONDS = 0.66  # 64 AST frames (25 ms windows every 10 ms): what the demo's audio encoder reads


# ------------------------------------------------------------------------------------- scenes


@dataclasses.dataclass
class Obj:
    color: str
    shape: str
    size: str
    cx: float = 0.0
    cy: float = 0.0
    r: float = 0.0

    @property
    def phrase(self) -> str:
        return f"{self.size} {self.color} {self.shape}"

    @property
    def label(self) -> int:
        return 1 + list(COLORS).index(self.color) * len(SHAPES) + SHAPES.index(self.shape)


@dataclasses.dataclass
class Scene:
    objects: list[Obj]
    position: str | None = None  # one object: where it is
    axis: str | None = None  # two objects: "h" (objects[0] left of objects[1]) or "v" (objects[0] above)

    def to_dict(self) -> dict:
        return {"objects": [dataclasses.asdict(o) for o in self.objects], "position": self.position, "axis": self.axis}


def _draw_objects(rng: random.Random, n: int) -> list[Obj]:
    out: list[Obj] = []
    while len(out) < n:
        o = Obj(rng.choice(list(COLORS)), rng.choice(SHAPES), rng.choice(SIZES))
        if any(o.color == p.color and o.shape == p.shape for p in out):
            continue  # two objects never share colour and shape (they could not be told apart)
        out.append(o)
    return out


def _place_one(rng: random.Random, o: Obj, pos: str) -> None:
    lo, hi = RADIUS[o.size]
    o.r = rng.uniform(lo, hi)
    c, m = IMAGE_SIZE / 2, o.r + 1
    near = (m, c - 10)  # well inside one half of the picture
    far = (c + 10, IMAGE_SIZE - m)
    across = (c - 7, c + 7)
    if pos == "left":
        o.cx, o.cy = rng.uniform(*near), rng.uniform(*across)
    elif pos == "right":
        o.cx, o.cy = rng.uniform(*far), rng.uniform(*across)
    elif pos == "top":
        o.cx, o.cy = rng.uniform(*across), rng.uniform(*near)
    else:
        o.cx, o.cy = rng.uniform(*across), rng.uniform(*far)


def _place_two(rng: random.Random, a: Obj, b: Obj, axis: str) -> None:
    for o in (a, b):
        lo, hi = RADIUS[o.size]
        o.r = rng.uniform(lo, hi)
    for _ in range(100):
        main_a = rng.uniform(a.r + 1, IMAGE_SIZE / 2 - 2)
        main_b = rng.uniform(IMAGE_SIZE / 2 + 2, IMAGE_SIZE - b.r - 1)
        if main_b - main_a < a.r + b.r + 3:
            continue
        off_a = rng.uniform(a.r + 1, IMAGE_SIZE - a.r - 1)
        off_b = rng.uniform(b.r + 1, IMAGE_SIZE - b.r - 1)
        # the relation must be the dominant direction (a is clearly left of / above b)
        if abs(off_a - off_b) > 0.6 * (main_b - main_a):
            continue
        break
    if axis == "h":
        a.cx, a.cy, b.cx, b.cy = main_a, off_a, main_b, off_b
    else:
        a.cx, a.cy, b.cx, b.cy = off_a, main_a, off_b, main_b


def sample_scene(rng: random.Random) -> Scene:
    """1 object (40%) with a position, or 2 objects (60%) with a horizontal or vertical relation."""
    if rng.random() < 0.4:
        (o,) = _draw_objects(rng, 1)
        pos = rng.choice(POSITIONS)
        _place_one(rng, o, pos)
        return Scene([o], position=pos)
    a, b = _draw_objects(rng, 2)
    axis = rng.choice(("h", "v"))
    _place_two(rng, a, b, axis)
    return Scene([a, b], axis=axis)


# ------------------------------------------------------------------------------------- text


def captions(scene: Scene) -> list[str]:
    """Three phrasings of the scene (every one is a reference caption)."""
    objs = scene.objects
    if len(objs) == 1:
        a = objs[0]
        return [f"a {a.phrase} on the {scene.position}", f"there is one {a.phrase}", f"a picture of a {a.phrase}"]
    a, b = objs
    fwd, inv = RELATIONS[scene.axis]
    return [f"a {a.phrase} {fwd} a {b.phrase}", f"two objects , a {a.phrase} and a {b.phrase}",
            f"a {b.phrase} {inv} a {a.phrase}"]


def questions(scene: Scene, rng: random.Random) -> list[tuple[str, str]]:
    """Every question that has one answer for this scene, as ``(question, answer)``, in a random order."""
    objs = scene.objects
    out: list[tuple[str, str]] = [("how many objects are there ?", NUMBERS[len(objs)])]
    for o in objs:
        if sum(p.shape == o.shape for p in objs) == 1:
            out.append((f"what color is the {o.shape} ?", o.color))
        if sum(p.color == o.color for p in objs) == 1:
            out.append((f"what shape is the {o.color} object ?", o.shape))
        out.append((f"what size is the {o.color} {o.shape} ?", o.size))
    if len(objs) == 1:
        o = objs[0]
        out.append((f"where is the {o.color} {o.shape} ?", scene.position))
    present = {(o.color, o.shape) for o in objs}
    if rng.random() < 0.5:
        c, s = rng.choice(sorted(present))
        out.append((f"is there a {c} {s} ?", "yes"))
    else:
        while True:
            c, s = rng.choice(list(COLORS)), rng.choice(SHAPES)
            if (c, s) not in present:
                break
        out.append((f"is there a {c} {s} ?", "no"))
    rng.shuffle(out)
    return out


# ------------------------------------------------------------------------------------- rendering


def _draw(draw, o: Obj, fill) -> None:
    x0, y0, x1, y1 = o.cx - o.r, o.cy - o.r, o.cx + o.r, o.cy + o.r
    if o.shape == "circle":
        draw.ellipse((x0, y0, x1, y1), fill=fill)
    elif o.shape == "square":
        s = o.r * 0.85  # same visual area as the circle, roughly
        draw.rectangle((o.cx - s, o.cy - s, o.cx + s, o.cy + s), fill=fill)
    else:
        draw.polygon([(x0, y1), (x1, y1), (o.cx, y0)], fill=fill)


def render_scene(scene: Scene, rng: random.Random):
    """→ ``(PIL RGB image 64×64, uint8 class map 64×64)`` (class 0 = background, see :data:`N_OBJECT_CLASSES`)."""
    from PIL import Image, ImageDraw

    gray = rng.randint(95, 165)
    img = Image.new("RGB", (IMAGE_SIZE, IMAGE_SIZE), (gray, gray, gray))
    labels = Image.new("L", (IMAGE_SIZE, IMAGE_SIZE), 0)
    d, dl = ImageDraw.Draw(img), ImageDraw.Draw(labels)
    for o in scene.objects:
        color = tuple(max(0, min(255, v + rng.randint(-18, 18))) for v in COLORS[o.color])
        _draw(d, o, color)
        _draw(dl, o, o.label)
    arr = np.asarray(img, dtype=np.int16)
    noise = np.random.default_rng(rng.getrandbits(32)).normal(0, 6, arr.shape)
    arr = np.clip(arr + noise, 0, 255).astype(np.uint8)
    return Image.fromarray(arr), np.asarray(labels, dtype=np.uint8)


def patch_labels(class_map: np.ndarray, patch: int = PATCH, min_pixels: int = 24) -> np.ndarray:
    """Per-patch object class (row-major, as ViT orders patch tokens): the object covering most of the
    patch when it covers at least ``min_pixels``, else background (0)."""
    h, w = class_map.shape
    out = np.zeros((h // patch) * (w // patch), dtype=np.int64)
    k = 0
    for y in range(0, h, patch):
        for x in range(0, w, patch):
            counts = np.bincount(class_map[y : y + patch, x : x + patch].ravel(), minlength=N_OBJECT_CLASSES)
            counts[0] = 0
            best = int(counts.argmax())
            out[k] = best if counts[best] >= min_pixels else 0
            k += 1
    return out


def scene_targets(scene: Scene) -> dict[str, np.ndarray]:
    """Image-level targets of the encoder's pretraining: multi-hot (size, colour, shape) and count."""
    multi = np.zeros(len(SIZES) * len(COLORS) * len(SHAPES), dtype=np.float32)
    for o in scene.objects:
        multi[(SIZES.index(o.size) * len(COLORS) + list(COLORS).index(o.color)) * len(SHAPES) + SHAPES.index(o.shape)] = 1
    return {"objects": multi, "count": np.int64(len(scene.objects) - 1)}


# ------------------------------------------------------------------------------------- audio


@dataclasses.dataclass
class Tone:
    pitch: str
    timbre: str
    length: str
    freq: float = 0.0
    start: float = 0.0
    seconds: float = 0.0

    @property
    def phrase(self) -> str:
        return f"{self.length} {self.pitch} {self.timbre}"


@dataclasses.dataclass
class Clip:
    tones: list[Tone]


def sample_clip(rng: random.Random) -> Clip:
    n = 1 if rng.random() < 0.5 else 2
    tones = []
    t = rng.uniform(0.02, 0.05)
    for _ in range(n):
        tone = Tone(rng.choice(list(PITCHES)), rng.choice(TIMBRES), rng.choice(list(LENGTHS)))
        tone.freq = rng.uniform(*PITCHES[tone.pitch])
        tone.seconds = rng.uniform(*LENGTHS[tone.length])
        tone.start = t
        t += tone.seconds + rng.uniform(0.04, 0.07)
        tones.append(tone)
    return Clip(tones)


def render_clip(clip: Clip, rng: random.Random, seconds: float = CLIP_SECONDS, rate: int = SAMPLE_RATE) -> np.ndarray:
    """Mono float32 waveform in [-1, 1]: the tones (10 ms fades) over faint noise."""
    n = int(seconds * rate)
    nrng = np.random.default_rng(rng.getrandbits(32))
    wav = nrng.normal(0, 0.01, n)
    for tone in clip.tones:
        i0, m = int(tone.start * rate), int(tone.seconds * rate)
        m = min(m, n - i0)
        t = np.arange(m) / rate
        phase = 2 * np.pi * tone.freq * t
        wave = np.sin(phase) if tone.timbre == "beep" else np.sign(np.sin(phase)) * 0.6
        fade = np.minimum(1.0, np.minimum(np.arange(m), m - 1 - np.arange(m)) / (0.01 * rate))
        wav[i0 : i0 + m] += 0.5 * wave * fade
    return np.clip(wav, -1, 1).astype(np.float32)


def clip_captions(clip: Clip) -> list[str]:
    tones = clip.tones
    if len(tones) == 1:
        a = tones[0]
        return [f"a {a.phrase}", f"one {a.phrase} sound", f"the sound of a {a.phrase}"]
    a, b = tones
    return [f"a {a.phrase} then a {b.phrase}", f"two sounds , a {a.phrase} and a {b.phrase}",
            f"a {b.phrase} after a {a.phrase}"]


# ------------------------------------------------------------------------------------- LM text


def lm_document(rng: random.Random, audio: bool = False) -> str:
    """A text-only pretraining document: 1–3 paraphrases of one scene (or clip) joined by ".", and in
    half of the scene documents a question about it with its answer (VQA format ``q </a> a``)."""
    if audio and rng.random() < 0.5:
        caps = clip_captions(sample_clip(rng))
        qa = []
    else:
        scene = sample_scene(rng)
        caps = captions(scene)
        qa = questions(scene, rng)
    rng.shuffle(caps)
    parts = caps[: rng.randint(1, 3)]
    doc = " . ".join(parts)
    if qa and rng.random() < 0.5:
        q, a = qa[0]
        doc += f" . {q} </a> {a}"
    return doc


def vocabulary(audio: bool = True) -> list[str]:
    """Every word the demo's texts use (the word-level tokenizer's vocabulary)."""
    words: list[str] = []

    def add(text: str) -> None:
        for w in text.split():
            if w not in words:
                words.append(w)

    add(" ".join(COLORS) + " " + " ".join(SHAPES) + " " + " ".join(SIZES) + " " + " ".join(POSITIONS))
    add(" ".join(NUMBERS) + " yes no . , ? object objects")
    o1, o2 = Obj("red", "circle", "big"), Obj("blue", "square", "small")
    for pos in POSITIONS:
        for text in captions(Scene([o1], position=pos)):
            add(text)
    for axis in RELATIONS:
        for text in captions(Scene([o1, o2], axis=axis)):
            add(text)
    for text in ("how many objects are there ?", "what color is the circle ?", "what shape is the red object ?",
                 "what size is the red circle ?", "where is the red circle ?", "is there a red circle ?"):
        add(text)
    if audio:
        add(" ".join(PITCHES) + " " + " ".join(TIMBRES) + " " + " ".join(LENGTHS))
        t = Tone("low", "beep", "short")
        for text in clip_captions(Clip([t])) + clip_captions(Clip([t, t])):
            add(text)
    return words


# ------------------------------------------------------------------------------------- writing


def item_rng(seed: int, kind: str, split: str, i: int) -> random.Random:
    return random.Random(f"demo:{seed}:{kind}:{split}:{i}")


def write_dataset(root: str, sizes: dict[str, int], seed: int = 0, questions_per_image: int = 2,
                  audio_sizes: dict[str, int] | None = None, progress: bool = True,
                  on_item=None) -> dict[str, str]:
    """Render ``sizes`` (split → images) to ``root``: ``images/<split>/*.png``, ``captions.jsonl``,
    ``vqa.jsonl`` (and ``audio/<split>/*.wav`` + ``audio.jsonl`` with ``audio_sizes``).

    Returns the paths of the jsonl files (the ``--annotations`` of ``scaling data convert jsonl``).
    """
    import soundfile as sf
    from tqdm import tqdm

    os.makedirs(root, exist_ok=True)
    paths = {"caption": os.path.join(root, "captions.jsonl"), "vqa": os.path.join(root, "vqa.jsonl")}
    total = sum(sizes.values()) + sum((audio_sizes or {}).values())
    bar = tqdm(total=total, desc="rendering scenes", unit="item", disable=not progress, dynamic_ncols=True)
    with atomic_write(paths["caption"]) as fc, atomic_write(paths["vqa"]) as fq:
        for split, n in sizes.items():
            os.makedirs(os.path.join(root, "images", split), exist_ok=True)
            for i in range(n):
                rng = item_rng(seed, "image", split, i)
                scene = sample_scene(rng)
                img, _ = render_scene(scene, rng)
                rel = f"images/{split}/{i:06d}.png"
                img.save(os.path.join(root, rel))
                sid = f"{split}-{i:06d}"
                meta = {"scene": scene.to_dict()}
                fc.write(json.dumps({"id": sid, "image": rel, "split": split, "task": "caption",
                                     "answers": captions(scene), "meta": meta}) + "\n")
                for j, (q, a) in enumerate(questions(scene, rng)[:questions_per_image]):
                    fq.write(json.dumps({"id": f"{sid}-q{j}", "image": rel, "split": split, "task": "vqa",
                                         "question": q, "answers": [a] * N_VQA_ANSWERS, "meta": meta}) + "\n")
                bar.update(1)
                if on_item:
                    on_item()
    if audio_sizes:
        paths["audio"] = os.path.join(root, "audio.jsonl")
        with atomic_write(paths["audio"]) as fa:
            for split, n in audio_sizes.items():
                os.makedirs(os.path.join(root, "audio", split), exist_ok=True)
                for i in range(n):
                    rng = item_rng(seed, "audio", split, i)
                    clip = sample_clip(rng)
                    wav = render_clip(clip, rng)
                    rel = f"audio/{split}/{i:06d}.wav"
                    sf.write(os.path.join(root, rel), wav, SAMPLE_RATE, subtype="PCM_16")
                    fa.write(json.dumps({"id": f"audio-{split}-{i:06d}", "audio": rel, "split": split, "task": "caption",
                                         "answers": clip_captions(clip),
                                         "meta": {"tones": [dataclasses.asdict(t) for t in clip.tones]}}) + "\n")
                    bar.update(1)
                    if on_item:
                        on_item()
    bar.close()
    return paths


def encoder_batch(rng: random.Random, n: int) -> tuple[list, list[np.ndarray], list[dict]]:
    """``n`` fresh scenes for encoder pretraining: (images, per-patch labels, image-level targets)."""
    images, patches, targets = [], [], []
    for _ in range(n):
        scene = sample_scene(rng)
        img, cmap = render_scene(scene, rng)
        images.append(img)
        patches.append(patch_labels(cmap))
        targets.append(scene_targets(scene))
    return images, patches, targets


def iter_words(texts: Iterable[str]) -> set[str]:
    return {w for t in texts for w in t.split()}
