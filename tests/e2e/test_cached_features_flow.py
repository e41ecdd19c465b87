"""docs/data.md's cached-features flow as written: convert → cache-features (no --split: every split the
config names) → train with data.use_features=true and a data.val (the validation loss reads the cached val
split). A cache of the training split only is refused with the command that caches the missing split."""

from __future__ import annotations

import json
import re

import pytest
import yaml
from PIL import Image

from scaling.cli.main import main

COLOURS = {"red": (220, 30, 30), "green": (30, 200, 30), "blue": (30, 30, 220)}


def _documented(start: str, containing: str) -> list[str]:
    """The first docs/data.md line that starts with ``start`` and contains ``containing``, as argv."""
    import os

    doc = open(os.path.join(os.path.dirname(__file__), "..", "..", "docs", "data.md")).read()
    for line in doc.splitlines():
        if line.startswith(start) and containing in line:
            return line.split("#")[0].split()
    raise AssertionError(f"docs/data.md has no {start!r} line with {containing!r}")


@pytest.mark.slow
def test_documented_cached_features_flow(tmp_path, backbones, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    media = tmp_path / "media"
    media.mkdir()
    lines = []
    for i in range(40):
        name = list(COLOURS)[i % 3]
        Image.new("RGB", (32, 32), COLOURS[name]).save(media / f"img{i}.png")
        lines.append({"id": f"s{i}", "image": f"img{i}.png", "captions": [f"a {name} picture"],
                      "split": "train" if i < 32 else "val"})
    (tmp_path / "data.jsonl").write_text("\n".join(json.dumps(x) for x in lines))
    assert main(["data", "convert", "jsonl", "--annotations", "data.jsonl", "--media", "media",
                 "--out", "shards/coco/{split}-%06d.tar", "--no-progress"]) == 0
    (tmp_path / "cfg.yaml").write_text(yaml.safe_dump({
        "model": {"method": "depalm", "llm": backbones["llama"], "encoder": backbones["vit"], "frozen_dtype": "fp32",
                  "map": {"d_embed": 32, "n_queries": 4}},
        "data": {"task": "caption", "num_workers": 0},
        "train": {"output_dir": "runs/coco", "max_steps": 2, "global_batch": 8, "micro_batch": 8, "precision": "fp32",
                  "save_every": 2, "log_every": 1, "progress_bar": False, "tensorboard": False, "log_samples": 0},
    }))
    cache_cmd = _documented("scaling data cache-features", "")
    train_cmd = _documented("scaling train", "use_features=true")
    assert "--split" not in cache_cmd and "data.val=shards/coco" in train_cmd
    # a cache of the training split only: refused with the command that caches the missing split
    only_train = [a.replace("features/coco", "features/train-only") for a in cache_cmd[1:]]
    assert main([*only_train, "--split", "train", "--no-progress"]) == 0
    capsys.readouterr()
    bad = [a.replace("features/coco", "features/train-only") for a in train_cmd[1:]] + ["train.output_dir=runs/bad"]
    assert main(bad) == 2
    err = capsys.readouterr().err
    assert "holds no cached 'val' split" in err and "--split val --out features/train-only" in err
    # the documented commands, as written
    assert main([*cache_cmd[1:], "--no-progress"]) == 0
    index = json.load(open("features/coco/index.json"))
    assert set(index["splits"]) == {"train", "val"}
    assert main(train_cmd[1:]) == 0
    out = capsys.readouterr()
    assert "training done: 2/2 steps" in out.out and re.search(r"validation loss \d", out.out)
