"""``scaling data inspect`` and ``scaling data bench`` on converted shards."""

from __future__ import annotations

import json
import os
import shutil

import pytest

from scaling.cli.main import main
from scaling.data.converters import convert
from scaling.data.inspect import inspect_shards
from scaling.data.shards import ShardSetWriter, read_positions
from scaling.data.synthetic import write_coco, write_shards


@pytest.fixture(scope="module")
def coco(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    kw = write_coco(str(root / "raw"), n_images=12)
    convert("coco", str(root / "shards" / "{split}-%06d.tar"), samples_per_shard=4, progress=False, echo=lambda s: None, **kw)
    return str(root / "shards")


def test_inspect_prints_statistics(coco, capsys):
    rc = main(["data", "inspect", coco, "--show", "2"])
    out = capsys.readouterr().out
    assert rc == 0
    assert "== split train: 6 samples in 2 shards" in out
    assert "answers per sample: min 5  mean 5  max 5" in out
    assert "media members: {'image': 6}" in out
    assert out.count("sample train-") == 2
    assert "image (first" in out and "prompt/question words" in out


def test_inspect_flags_problems_and_writes_index(coco, tmp_path, capsys):
    for name in os.listdir(coco):
        if name.startswith("val-"):
            shutil.copy(os.path.join(coco, name), tmp_path / name)
    report = inspect_shards(str(tmp_path / "val-{000000..000000}.tar"), write_index=True, echo=print)
    assert report["train"]["num_samples"] == 3  # no index: split name defaults to train
    index = json.load(open(tmp_path / "index.json"))
    assert index["splits"]["train"]["num_samples"] == 3 and index["splits"]["train"]["modality"] == "image"
    bad = tmp_path / "bad"
    write_shards(str(bad), [2])
    writer = ShardSetWriter(str(bad / "train-%06d.tar"), str(bad))  # rewrite it with a truncated jpg
    for i, (_, sample, _) in enumerate(list(read_positions(str(bad / "train-000000.tar")))):
        data = sample["jpg"][: len(sample["jpg"]) // 2] if i == 1 else sample["jpg"]
        writer.write(sample["__key__"], json.loads(sample["json"]), {"jpg": data})
    writer.close()
    rc = main(["data", "inspect", str(bad)])
    out = capsys.readouterr().out
    assert rc == 1 and "PROBLEMS (1)" in out and "train-000000001.jpg" in out
    with open(bad / "train-000000.tar", "r+b") as fh:  # now a shard that ends early
        fh.truncate(1536)
    rc = main(["data", "inspect", str(bad)])
    assert rc == 1 and "index 2 samples, found 1" in capsys.readouterr().out


def test_bench_runs(coco, capsys):
    rc = main(["data", "bench", coco, "-n", "4"])
    out = capsys.readouterr().out
    assert rc == 0 and "decode train" in out and "decode eval" in out and "samples/s" in out
