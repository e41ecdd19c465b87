"""Readers of the official annotation files → :class:`Item` lists (one per question / image / clip).

Each reader takes the files as downloaded and returns items with the candidate media names to look
up in the media folder (layouts differ between mirrors, so lookups also go by file name and stem).
Malformed files raise :class:`~scaling.config.base.ConfigError` naming the file and the field.

========== =============================================== ====== ========== =================
dataset    annotation file(s)                               media  task       answers per item
========== =============================================== ====== ========== =================
coco       dataset_coco.json (Karpathy splits)              image  caption    5 captions
vqav2      v2_OpenEnded_mscoco_*_questions.json + annots    image  vqa        10 answers
okvqa      OpenEnded_mscoco_*_questions.json + annots       image  vqa        10 (5 x 2) answers
gqa        *_balanced_questions.json                        image  gqa        1 answer
aokvqa     aokvqa_v1p0_*.json (direct_answers)              image  vqa        10 answers
textvqa    TextVQA_0.5.1_*.json                             image  vqa        10 answers
textcaps   TextCaps_0.1_*.json                              image  caption    5 captions
audiocaps  {train,val,test}.csv                             audio  caption    1 (train) / 5
msrvtt     train_val_videodatainfo.json / test_...json      video  caption    20 captions
msrvtt-qa  {train,val,test}_qa.json                         video  videoqa    1 answer
msvd-qa    {train,val,test}_qa.json (+ youtube_mapping.txt) video  videoqa    1 answer
jsonl      one JSON record per line                         any    any        any
========== =============================================== ====== ========== =================
"""

from __future__ import annotations

import csv
import dataclasses
import json
import os
from collections.abc import Callable
from typing import Any

from scaling.config.base import ConfigError


@dataclasses.dataclass
class Item:
    id: str
    split: str
    media: list[str]  # candidate names/paths of the media file (first that exists wins)
    answers: list[str]
    prompt: str = ""
    question: str | None = None
    ids: list[str] | None = None
    meta: dict[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class Dataset:
    name: str
    modality: str  # image | audio | video
    task: str  # caption | vqa | gqa | videoqa
    items: list[Item]
    skipped: list[str] = dataclasses.field(default_factory=list)  # records left out, each "where: why"


# ------------------------------------------------------------------------------------ helpers


def load_json(path: str, dataset: str) -> Any:
    if not path:
        raise ConfigError(f"{dataset}: no annotation file given (--annotations FILE)")
    try:
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"{dataset}: annotation file {path!r} does not exist") from None
    except json.JSONDecodeError as err:
        raise ConfigError(f"{dataset}: {path} is not valid JSON ({err})") from None


def need(obj: Any, field: str, path: str, where: str, kind: type | tuple[type, ...] | None = None) -> Any:
    """``obj[field]``, or a ConfigError naming the file, the place and the field."""
    if not isinstance(obj, dict) or field not in obj:
        raise ConfigError(f"{path}: {where} has no field {field!r}; is this the official annotation file?")
    value = obj[field]
    if kind is not None and not isinstance(value, kind):
        names = kind.__name__ if isinstance(kind, type) else "/".join(k.__name__ for k in kind)
        raise ConfigError(f"{path}: {where}: field {field!r} should be a {names}, got {type(value).__name__}")
    return value


def split_from_name(path: str, default: str | None = None) -> str:
    base = os.path.basename(path).lower()
    for key, split in (("train", "train"), ("val", "val"), ("test", "test")):
        if key in base:
            return split
    if default:
        return default
    raise ConfigError(f"cannot tell the split of {path}; pass --split train|val|test")


# ------------------------------------------------------------------------------------ image


def coco_karpathy(annotations: str, split: str | None = None, restval_to_train: bool = True, **_) -> Dataset:
    data = load_json(annotations, "coco")
    images = need(data, "images", annotations, "the top level", list)
    items = []
    for i, img in enumerate(images):
        where = f"images[{i}]"
        sp = need(img, "split", annotations, where, str)
        if sp == "restval":
            sp = "train" if restval_to_train else "restval"
        if split and sp != split:
            continue
        filename = need(img, "filename", annotations, where, str)
        sents = need(img, "sentences", annotations, where, list)
        caps = [need(s, "raw", annotations, f"{where}.sentences", str).strip() for s in sents]
        cid = str(img.get("cocoid", img.get("imgid", filename)))
        cands = [os.path.join(img.get("filepath", ""), filename), filename]
        items.append(Item(cid, sp, cands, caps, meta={"filename": filename}))
    return Dataset("coco", "image", "caption", items)


def _vqa_image_names(image_id: int | str, subtype: str) -> list[str]:
    try:
        n = int(image_id)
    except (TypeError, ValueError):
        return [str(image_id), f"{image_id}.jpg"]
    names = []
    if subtype:
        names += [f"{subtype}/COCO_{subtype}_{n:012d}.jpg", f"COCO_{subtype}_{n:012d}.jpg"]
    names += [f"{n:012d}.jpg", f"COCO_train2014_{n:012d}.jpg", f"COCO_val2014_{n:012d}.jpg", f"COCO_test2015_{n:012d}.jpg"]
    return names


def vqa_format(questions: str | None = None, annotations: str | None = None, split: str | None = None, name: str = "vqav2", **_) -> Dataset:
    """VQAv2 / OK-VQA: the questions JSON and (except for test) the annotations JSON."""
    if not questions:
        raise ConfigError(f"{name}: pass the questions JSON with --questions (and the answers with --annotations)")
    qdata = load_json(questions, name)
    qs = need(qdata, "questions", questions, "the top level", list)
    subtype = qdata.get("data_subtype", "")
    split = split or split_from_name(questions)
    answers_by_q: dict[Any, list[str]] = {}
    if annotations:
        adata = load_json(annotations, name)
        anns = need(adata, "annotations", annotations, "the top level", list)
        for i, a in enumerate(anns):
            qid = need(a, "question_id", annotations, f"annotations[{i}]")
            ans = need(a, "answers", annotations, f"annotations[{i}]", list)
            answers_by_q[qid] = [str(need(x, "answer", annotations, f"annotations[{i}].answers")) for x in ans]
        missing = sum(1 for q in qs if q.get("question_id") not in answers_by_q)
        if missing == len(qs):
            raise ConfigError(f"{name}: no question of {questions} has an answer in {annotations}; are they the same split?")
    items = []
    for i, q in enumerate(qs):
        where = f"questions[{i}]"
        qid = need(q, "question_id", questions, where)
        image_id = need(q, "image_id", questions, where)
        text = need(q, "question", questions, where, str)
        items.append(Item(str(qid), split, _vqa_image_names(image_id, subtype), answers_by_q.get(qid, []), question=text,
                          meta={"image_id": image_id}))
    return Dataset(name, "image", "vqa", items)


def gqa(questions: str | None = None, split: str | None = None, annotations: str | None = None, **_) -> Dataset:
    questions = questions or annotations
    data = load_json(questions, "gqa")
    if not isinstance(data, dict):
        raise ConfigError(f"{questions}: expected a mapping question id → question (GQA *_questions.json)")
    split = split or split_from_name(questions)
    items = []
    for qid, q in data.items():
        where = f"question {qid!r}"
        image = need(q, "imageId", questions, where)
        text = need(q, "question", questions, where, str)
        ans = q.get("answer")
        items.append(Item(str(qid), split, [f"{image}.jpg", str(image)], [ans] if ans else [], question=text,
                          meta={"image_id": image}))
    return Dataset("gqa", "image", "gqa", items)


def aokvqa(annotations: str, split: str | None = None, **_) -> Dataset:
    data = load_json(annotations, "aokvqa")
    if not isinstance(data, list):
        raise ConfigError(f"{annotations}: expected a list of questions (aokvqa_v1p0_<split>.json)")
    items = []
    for i, q in enumerate(data):
        where = f"[{i}]"
        qid = need(q, "question_id", annotations, where)
        image_id = need(q, "image_id", annotations, where)
        text = need(q, "question", annotations, where, str)
        sp = split or q.get("split") or split_from_name(annotations)
        answers = [str(a) for a in q.get("direct_answers", [])]
        coco_split = {"val": "val", "test": "test"}.get(q.get("split", sp), "train")
        names = [f"{coco_split}2017/{int(image_id):012d}.jpg", f"{int(image_id):012d}.jpg"] + _vqa_image_names(image_id, "")
        items.append(Item(str(qid), sp, names, answers, question=text,
                          meta={"image_id": image_id, "choices": q.get("choices"), "correct_choice_idx": q.get("correct_choice_idx")}))
    return Dataset("aokvqa", "image", "vqa", items)


def textvqa(annotations: str, split: str | None = None, **_) -> Dataset:
    data = load_json(annotations, "textvqa")
    rows = need(data, "data", annotations, "the top level", list)
    split = split or data.get("dataset_type") or split_from_name(annotations)
    split = "val" if split == "validation" else split
    items = []
    for i, q in enumerate(rows):
        where = f"data[{i}]"
        qid = need(q, "question_id", annotations, where)
        image_id = need(q, "image_id", annotations, where)
        text = need(q, "question", annotations, where, str)
        items.append(Item(str(qid), split, [f"{image_id}.jpg", str(image_id)], [str(a) for a in q.get("answers", [])],
                          question=text, meta={"image_id": image_id}))
    return Dataset("textvqa", "image", "vqa", items)


def textcaps(annotations: str, split: str | None = None, **_) -> Dataset:
    """One TextCaps entry per caption; entries of the same image become one item with all captions."""
    data = load_json(annotations, "textcaps")
    rows = need(data, "data", annotations, "the top level", list)
    split = split or data.get("dataset_type") or split_from_name(annotations)
    split = "val" if split == "validation" else split
    by_image: dict[str, Item] = {}
    for i, r in enumerate(rows):
        where = f"data[{i}]"
        image_id = str(need(r, "image_id", annotations, where))
        item = by_image.get(image_id)
        if item is None:
            cands = [r["image_path"]] if r.get("image_path") else []
            item = Item(image_id, split, cands + [f"{image_id}.jpg"], [], meta={"image_id": image_id})
            by_image[image_id] = item
        if r.get("caption_str"):
            if r["caption_str"] not in item.answers:
                item.answers.append(str(r["caption_str"]))
        elif r.get("reference_strs") and not item.answers:
            item.answers.extend(str(c) for c in r["reference_strs"])
    return Dataset("textcaps", "image", "caption", list(by_image.values()))


# ------------------------------------------------------------------------------------ audio


def audiocaps(annotations: str, split: str | None = None, **_) -> Dataset:
    """Official CSV ``audiocap_id,youtube_id,start_time,caption``; rows of the same clip are grouped."""
    split = split or split_from_name(annotations)
    try:
        with open(annotations, newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            header = reader.fieldnames or []
            for col in ("audiocap_id", "youtube_id", "start_time", "caption"):
                if col not in header:
                    raise ConfigError(f"{annotations}: missing column {col!r} (header is {header}); expected the "
                                      "official AudioCaps CSV audiocap_id,youtube_id,start_time,caption")
            rows = list(reader)
    except FileNotFoundError:
        raise ConfigError(f"audiocaps: annotation file {annotations!r} does not exist") from None
    by_clip: dict[tuple[str, str], Item] = {}
    for r in rows:
        ytid, start = r["youtube_id"].strip(), r["start_time"].strip()
        key = (ytid, start)
        item = by_clip.get(key)
        if item is None:
            try:
                s = float(start)
            except ValueError:
                raise ConfigError(f"{annotations}: start_time {start!r} of audiocap_id {r['audiocap_id']} is not a number") from None
            stems = [ytid, f"Y{ytid}", r["audiocap_id"], f"{ytid}_{start}", f"{ytid}_{int(s)}", f"Y{ytid}_{s:.3f}_{s + 10:.3f}",
                     f"{ytid}_{s:.3f}_{s + 10:.3f}", f"{ytid}_{int(s * 1000)}"]
            item = Item(f"{ytid}_{int(s)}", split, stems, [], ids=[], meta={"youtube_id": ytid, "start_time": s})
            by_clip[key] = item
        item.answers.append(r["caption"].strip())
        item.ids.append(r["audiocap_id"])
    return Dataset("audiocaps", "audio", "caption", list(by_clip.values()))


# ------------------------------------------------------------------------------------ video


def msrvtt(annotations: str, split: str | None = None, **_) -> Dataset:
    data = load_json(annotations, "msrvtt")
    videos = need(data, "videos", annotations, "the top level", list)
    sentences = need(data, "sentences", annotations, "the top level", list)
    caps: dict[str, list[str]] = {}
    for i, s in enumerate(sentences):
        vid = need(s, "video_id", annotations, f"sentences[{i}]", str)
        caps.setdefault(vid, []).append(need(s, "caption", annotations, f"sentences[{i}]", str).strip())
    items = []
    for i, v in enumerate(videos):
        vid = need(v, "video_id", annotations, f"videos[{i}]", str)
        sp = {"validate": "val"}.get(v.get("split", ""), v.get("split") or split_from_name(annotations, "test"))
        if split and sp != split:
            continue
        items.append(Item(vid, sp, [f"{vid}.mp4", vid], caps.get(vid, []), meta={"category": v.get("category")}))
    return Dataset("msrvtt", "video", "caption", items)


def _read_mapping(path: str) -> dict[str, str]:
    """MSVD ``youtube_mapping.txt``: lines ``<youtube_name> vid<N>`` → {"vid<N>": youtube_name}."""
    out = {}
    try:
        with open(path, encoding="utf-8") as fh:
            for n, line in enumerate(fh, 1):
                parts = line.split()
                if not parts:
                    continue
                if len(parts) != 2:
                    raise ConfigError(f"{path}: line {n} should be '<youtube_name> vid<N>', got {line.strip()!r}")
                out[parts[1]] = parts[0]
    except FileNotFoundError:
        raise ConfigError(f"msvd-qa: mapping file {path!r} does not exist") from None
    return out


def video_qa(annotations: str, split: str | None = None, name: str = "msrvtt-qa", mapping: str | None = None, **_) -> Dataset:
    """MSRVTT-QA / MSVD-QA: a JSON list of {question, answer, video_id, id}."""
    data = load_json(annotations, name)
    if not isinstance(data, list):
        raise ConfigError(f"{annotations}: expected a list of {{question, answer, video_id, id}} ({name} *_qa.json)")
    split = split or split_from_name(annotations)
    names = _read_mapping(mapping) if mapping else {}
    items = []
    for i, q in enumerate(data):
        where = f"[{i}]"
        text = need(q, "question", annotations, where, str)
        answer = need(q, "answer", annotations, where)
        vid = need(q, "video_id", annotations, where)
        qid = q.get("id", i)
        if name == "msvd-qa":
            key = vid if str(vid).startswith("vid") else f"vid{vid}"
            cands = ([names[key]] if key in names else []) + [key, str(vid)]
        else:
            cands = [f"video{vid}", str(vid)] if not str(vid).startswith("video") else [str(vid)]
        items.append(Item(f"{qid}", split, cands, [str(answer)], question=text, meta={"video_id": vid}))
    return Dataset(name, "video", "videoqa", items)


# ------------------------------------------------------------------------------------ jsonl


def jsonl(annotations: str, split: str | None = None, task: str | None = None, modality: str | None = None, **_) -> Dataset:
    """One record per line: ``{"id"?, "media": path | [paths] (or "image"/"audio"/"video"),
    "prompt"? | "question"?, "answers": [...] (or "answer"/"caption"), "split"?, "task"?}``."""
    items = []
    skipped: list[str] = []
    kinds: set[str] = set()
    tasks: set[str] = set()
    try:
        fh = open(annotations, encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"jsonl: annotation file {annotations!r} does not exist") from None
    with fh:
        for n, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                r = json.loads(line)
            except json.JSONDecodeError as err:
                raise ConfigError(f"{annotations}: line {n} is not valid JSON ({err})") from None
            where = f"line {n}"
            media = None
            for key in ("media", "image", "audio", "video"):
                if key in r:
                    media = r[key]
                    if key != "media":
                        kinds.add(key)
                    break
            if media is None:
                raise ConfigError(f"{annotations}: {where} has no field 'media' (or 'image'/'audio'/'video')")
            media = [media] if isinstance(media, str) else list(media)
            if "answers" in r:
                answers = r["answers"]
            elif "answer" in r:
                answers = [r["answer"]]
            elif "caption" in r:
                answers = [r["caption"]]
            elif "captions" in r:
                answers = r["captions"]
            else:
                answers = []
            if not isinstance(answers, list):
                raise ConfigError(f"{annotations}: {where}: field 'answers' should be a list of strings")
            bad = [a for a in answers if not isinstance(a, str) and (isinstance(a, bool) or not isinstance(a, int))]
            if bad:  # null would become "None" and ["red", "blue"] "['red', 'blue']": never a reference
                skipped.append(f"{where}: answer {json.dumps(bad[0])[:60]} is not a string")
                continue
            t = r.get("task") or task
            if t:
                tasks.add(t)
            items.append(Item(str(r.get("id", f"{os.path.basename(annotations)}-{n}")), r.get("split") or split or "train",
                              media, [str(a) for a in answers], prompt=str(r.get("prompt", "")),
                              question=r.get("question"), meta=r.get("meta") or {}))
    if not items:
        raise ConfigError(f"{annotations}: no records" + (f" with usable answers ({len(skipped)} skipped: "
                                                          f"{'; '.join(skipped[:3])})" if skipped else ""))
    if len(tasks) > 1:
        raise ConfigError(f"{annotations}: records mix tasks {sorted(tasks)}; convert them separately")
    task = task or (tasks.pop() if tasks else ("vqa" if any(i.question for i in items) else "caption"))
    if modality is None:
        modality = kinds.pop() if len(kinds) == 1 else None
    return Dataset("jsonl", modality or "", task, items, skipped)


PARSERS: dict[str, Callable[..., Dataset]] = {
    "coco": coco_karpathy,
    "vqav2": lambda **kw: vqa_format(name="vqav2", **kw),
    "okvqa": lambda **kw: vqa_format(name="okvqa", **kw),
    "gqa": gqa,
    "aokvqa": aokvqa,
    "textvqa": textvqa,
    "textcaps": textcaps,
    "audiocaps": audiocaps,
    "msrvtt": msrvtt,
    "msrvtt-qa": lambda **kw: video_qa(name="msrvtt-qa", **kw),
    "msvd-qa": lambda **kw: video_qa(name="msvd-qa", **kw),
    "jsonl": jsonl,
}
