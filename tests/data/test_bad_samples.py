"""Bad input: corrupt media, missing shards and missing files are skipped and counted, never a crash."""

from __future__ import annotations

import io
import os
import random

import pytest

from scaling.config import load_config
from scaling.config.base import ConfigError
from scaling.data.converters import convert
from scaling.data.shards import ShardSetWriter, sample_record, update_index
from scaling.data.stream import build_loader
from scaling.data.synthetic import make_image, write_coco, write_jsonl
from scaling.models.tiny import word_tokenizer

BAD = {3, 10}  # truncated jpg, then a sample without media


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    d = str(tmp_path_factory.mktemp("bad"))
    rng = random.Random(0)
    writer = ShardSetWriter(os.path.join(d, "train-%06d.tar"), d, samples_per_shard=6)
    for i in range(18):
        img, color, shape = make_image(rng, 36)
        buf = io.BytesIO()
        img.save(buf, format="JPEG")
        data = buf.getvalue()
        members = {"jpg": data[: len(data) // 3] if i == 3 else data}
        if i == 10:
            members = {"txt": b"no image here"}
        writer.write(f"k{i:04d}", sample_record(f"id{i}", "caption", "bad", "train", [f"a {color} {shape}"]), members)
    entries = writer.close()
    update_index(d, "train", {"task": "caption", "modality": "image", "num_samples": 18,
                              "shards": [e.__dict__ for e in entries]}, writer.samples)
    update_index(d, "val", {"task": "caption", "modality": "image", "num_samples": 18,
                            "shards": [e.__dict__ for e in entries]}, writer.samples)
    return d


def cfg_for(root, **over):
    items = {"model.encoder": "tiny-vit", "data.train": root, "data.val": root, "train.micro_batch": 2,
             "eval.batch_size": 4, "data.num_workers": 2, **over}
    return load_config(None, [f"{k}={v}" for k, v in items.items()])


def test_corrupt_samples_are_skipped_and_counted_in_eval(root):
    tok = word_tokenizer()
    loader = build_loader(cfg_for(root), tok, "val", 0, 1, False)
    ids = [i for b in loader for i in b["ids"]]
    assert sorted(ids) == sorted(f"id{i}" for i in range(18) if i not in BAD)
    assert loader.skipped == 2
    assert any("k0003" in k for k in loader.skipped_keys) and any("k0010" in k for k in loader.skipped_keys)


def test_training_keeps_equal_batch_counts_despite_bad_samples(root):
    tok = word_tokenizer()
    cfg = cfg_for(root)
    total_skipped = 0
    seen = []
    for rank in range(2):
        loader = build_loader(cfg, tok, "train", rank, 2, True)
        batches = [b["ids"] for b in loader]
        assert len(batches) == len(loader) == 18 // 4
        assert all(len(b) == 2 for b in batches)
        seen += [i for b in batches for i in b]
        total_skipped += loader.skipped
    assert not {f"id{i}" for i in BAD} & set(seen)
    assert total_skipped >= 1


def test_missing_shard_file_is_skipped(root, tmp_path):
    import shutil

    for name in os.listdir(root):
        if not name.startswith("."):
            shutil.copy(os.path.join(root, name), tmp_path / name)
    os.remove(tmp_path / "train-000001.tar")
    tok = word_tokenizer()
    loader = build_loader(cfg_for(str(tmp_path)), tok, "val", 0, 1, False)
    ids = [i for b in loader for i in b["ids"]]
    assert sorted(ids) == sorted(f"id{i}" for i in range(18) if i not in BAD and not 6 <= i < 12)
    assert loader.skipped == 6 + 1  # the 6 samples of the missing shard + the truncated jpg
    train = build_loader(cfg_for(str(tmp_path)), tok, "train", 0, 1, True)
    assert len([b for b in train]) == len(train) == 9


def test_convert_reports_missing_media(tmp_path):
    kw = write_coco(str(tmp_path / "raw"), n_images=12)
    victims = sorted(os.listdir(os.path.join(kw["media"], "train2014")))[:2]
    for v in victims:
        os.remove(os.path.join(kw["media"], "train2014", v))
    with open(os.path.join(kw["media"], "val2014", "COCO_val2014_000000100002.jpg"), "wb") as fh:  # a val image
        fh.write(b"not an image")
    lines = []
    out = convert("coco", str(tmp_path / "shards/{split}-%06d.tar"), progress=False, echo=lines.append, **kw)
    text = "\n".join(lines)
    assert "coco/train: 2 of" in text and victims[0] in text
    assert out["train"]["missing"] == 2 and out["train"]["num_samples"] == 6 - 2  # train + restval
    assert out["val"]["unreadable"] == 1 and out["val"]["num_samples"] == 2


def test_convert_refuses_empty_shard_sets(tmp_path):
    kw = write_jsonl(str(tmp_path / "raw"), n=3)
    os.makedirs(tmp_path / "elsewhere")
    with pytest.raises(ConfigError, match="none of the 3 items"):
        convert("jsonl", str(tmp_path / "shards/{split}-%06d.tar"), annotations=kw["annotations"],
                media=str(tmp_path / "elsewhere"), progress=False, echo=lambda s: None)
    assert not os.path.exists(tmp_path / "shards")
