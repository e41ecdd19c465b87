"""Converters: every official format → shards → read back (counts, answer grouping, index)."""

from __future__ import annotations

import json
import os

import pytest

from scaling.cli.main import main
from scaling.config.base import ConfigError
from scaling.data.converters import convert
from scaling.data.shards import read_positions, resolve_split
from scaling.data.synthetic import WRITERS, write_audiocaps, write_coco, write_vqa

# dataset → {split: (samples, answers per sample)}, from the synthetic writers' defaults
EXPECTED = {
    "coco": {"train": (16, {5}), "val": (7, {5}), "test": (7, {5})},  # restval folded into train
    "vqav2": {"train": (30, {10, 20})},  # the duplicated question is merged: 20 answers
    "okvqa": {"train": (30, {10, 20})},
    "gqa": {"train": (24, {1})},
    "aokvqa": {"train": (8, {10})},
    "textvqa": {"train": (16, {10})},
    "textcaps": {"train": (8, {5})},  # 5 entries per image → one sample
    "audiocaps": {"train": (8, {1})},
    "msrvtt": {"train": (4, {2}), "val": (2, {2})},
    "msrvtt-qa": {"train": (12, {1})},
    "msvd-qa": {"train": (12, {1})},
    "jsonl": {"train": (12, {1})},
}
MEDIA = {"coco": "jpg", "vqav2": "jpg", "okvqa": "jpg", "gqa": "jpg", "aokvqa": "jpg", "textvqa": "jpg", "textcaps": "jpg",
         "audiocaps": "flac", "msrvtt": "mp4", "msrvtt-qa": "mp4", "msvd-qa": "avi", "jsonl": "png"}


def read_all(root, split):
    src = resolve_split(root, split)
    out = []
    for sh in src.shards:
        for _, sample, _ in read_positions(sh.url):
            out.append(sample)
    return src, out


@pytest.mark.parametrize("name", sorted(WRITERS))
def test_convert_and_read_back(name, tmp_path):
    kw = WRITERS[name](str(tmp_path / "raw"), **({"n_images": 30} if name == "coco" else {}))
    summary = convert(name, str(tmp_path / "shards" / "{split}-%06d.tar"), samples_per_shard=5, progress=False,
                      echo=lambda s: None, **kw)
    assert set(summary) == set(EXPECTED[name])
    index = json.load(open(tmp_path / "shards" / "index.json"))
    for split, (n, answers_per) in EXPECTED[name].items():
        src, samples = read_all(str(tmp_path / "shards"), split)
        assert len(samples) == n == src.num_samples == index["splits"][split]["num_samples"]
        assert all(s["num_samples"] <= 5 for s in index["splits"][split]["shards"])
        recs = [json.loads(s["json"]) for s in samples]
        assert {len(r["answers"]) for r in recs} == answers_per
        assert len({r["id"] for r in recs}) == n
        assert all(MEDIA[name] in s for s in samples)
        assert all(r["task"] == index["splits"][split]["task"] for r in recs)
        if index["splits"][split]["task"] in ("vqa", "gqa", "videoqa"):
            assert all(r["question"].endswith("?") for r in recs)
        ids = json.load(open(tmp_path / "shards" / f"{split}-samples.json"))
        assert sum(len(v["ids"]) for v in ids.values()) == n


def test_vqa_duplicate_grouping_only_in_training(tmp_path):
    kw = write_vqa(str(tmp_path / "raw"), n_images=3, subtype="val2014")
    out = tmp_path / "s" / "{split}-%06d.tar"
    convert("vqav2", str(out), split="val", progress=False, echo=lambda s: None, **kw)
    convert("vqav2", str(out), split="train", progress=False, echo=lambda s: None, **kw)
    _, val = read_all(str(tmp_path / "s"), "val")
    _, train = read_all(str(tmp_path / "s"), "train")
    assert len(val) == 10 and len(train) == 9  # 3 images x 3 questions + 1 duplicate question
    merged = [json.loads(s["json"]) for s in train if len(json.loads(s["json"])["answers"]) == 20]
    assert len(merged) == 1 and len(merged[0]["ids"]) == 2
    index = json.load(open(tmp_path / "s" / "index.json"))
    assert set(index["splits"]) == {"train", "val"}  # a second run adds its split to the index


def test_audiocaps_groups_captions_and_resamples(tmp_path):
    import io

    import soundfile as sf

    kw = write_audiocaps(str(tmp_path / "raw"), n_clips=3, captions_per_clip=5, split="val", rate=44100)
    convert("audiocaps", str(tmp_path / "s" / "{split}-%06d.tar"), progress=False, echo=lambda s: None, **kw)
    _, samples = read_all(str(tmp_path / "s"), "val")
    assert len(samples) == 3
    for s in samples:
        rec = json.loads(s["json"])
        assert len(rec["answers"]) == 5 and len(rec["ids"]) == 5
        wav, sr = sf.read(io.BytesIO(s["flac"]))
        assert sr == 16000 and wav.ndim == 1 and abs(len(wav) - 16000) <= 1


def test_samples_per_shard_and_max_side(tmp_path):
    kw = write_coco(str(tmp_path / "raw"), n_images=20, splits=("train",))
    convert("coco", str(tmp_path / "s" / "{split}-%06d.tar"), samples_per_shard=6, max_side=20, progress=False,
            echo=lambda s: None, **kw)
    index = json.load(open(tmp_path / "s" / "index.json"))
    assert [s["num_samples"] for s in index["splits"]["train"]["shards"]] == [6, 6, 6, 2]
    import io

    from PIL import Image

    _, samples = read_all(str(tmp_path / "s"), "train")
    assert all(max(Image.open(io.BytesIO(s["jpg"])).size) <= 20 for s in samples)


def test_video_frames_option(tmp_path):
    kw = WRITERS["msrvtt-qa"](str(tmp_path / "raw"), n_videos=2)
    convert("msrvtt-qa", str(tmp_path / "s" / "{split}-%06d.tar"), video_frames=3, progress=False, echo=lambda s: None, **kw)
    _, samples = read_all(str(tmp_path / "s"), "train")
    assert all(sorted(k for k in s if k.endswith(".jpg")) == ["f000.jpg", "f001.jpg", "f002.jpg"] for s in samples)


@pytest.mark.parametrize("case", ["not-json", "no-questions", "no-sentences", "bad-csv", "wrong-type"])
def test_malformed_annotations_name_file_and_field(tmp_path, case):
    out = str(tmp_path / "s" / "{split}-%06d.tar")
    media = str(tmp_path)
    path = tmp_path / "ann.json"
    if case == "not-json":
        path.write_text("{broken")
        with pytest.raises(ConfigError, match=r"ann\.json is not valid JSON"):
            convert("coco", out, annotations=str(path), media=media)
    elif case == "no-questions":
        path.write_text(json.dumps({"data_subtype": "train2014", "qs": []}))
        with pytest.raises(ConfigError, match=r"ann\.json: the top level has no field 'questions'"):
            convert("vqav2", out, questions=str(path), media=media)
    elif case == "no-sentences":
        path.write_text(json.dumps({"images": [{"split": "train", "filename": "a.jpg"}]}))
        with pytest.raises(ConfigError, match=r"ann\.json: images\[0\] has no field 'sentences'"):
            convert("coco", out, annotations=str(path), media=media)
    elif case == "bad-csv":
        csv = tmp_path / "train.csv"
        csv.write_text("id,caption\n1,a dog\n")
        with pytest.raises(ConfigError, match=r"train\.csv: missing column 'audiocap_id'"):
            convert("audiocaps", out, annotations=str(csv), media=media)
    else:
        path.write_text(json.dumps({"images": "nope"}))
        with pytest.raises(ConfigError, match=r"field 'images' should be a list"):
            convert("coco", out, annotations=str(path), media=media)


def test_cli_convert_and_errors(tmp_path, capsys):
    kw = write_coco(str(tmp_path / "raw"), n_images=8)
    rc = main(["data", "convert", "coco", "--annotations", kw["annotations"], "--media", kw["media"],
               "--out", str(tmp_path / "s" / "{split}-%06d.tar"), "--no-progress"])
    assert rc == 0
    assert os.path.exists(tmp_path / "s" / "index.json")
    rc = main(["data", "convert", "cocoo", "--annotations", kw["annotations"], "--media", kw["media"],
               "--out", str(tmp_path / "x" / "{split}-%06d.tar")])
    assert rc == 2 and "did you mean 'coco'" in capsys.readouterr().err
    rc = main(["data", "convert", "coco", "--annotations", kw["annotations"], "--media", kw["media"],
               "--out", str(tmp_path / "x" / "all-%06d.tar")])
    assert rc == 2 and "{split}" in capsys.readouterr().err
