"""Issue 19's small items, each the way a user meets it: ``eval --data`` given the run's own test shards as
a URL pattern is the split's own evaluation (not "other data"); ``data bench`` on a few samples says its
figure is start-up dominated; ``train.eval_every=0`` is accepted and means off."""

from __future__ import annotations

import json
import os

import pytest
from PIL import Image

from scaling.cli.eval import out_dir_qualifiers, same_shards
from scaling.cli.main import main

CPU_TINY = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "configs", "cpu_tiny.yaml")


@pytest.fixture(scope="module")
def shard_folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("small")
    (root / "media").mkdir()
    lines = []
    for i in range(12):
        Image.new("RGB", (32, 32), (i * 20, 30, 30)).save(root / "media" / f"i{i}.png")
        lines.append({"id": f"s{i}", "image": f"i{i}.png", "captions": ["a picture"], "split": "train" if i < 8 else "test"})
    (root / "a.jsonl").write_text("\n".join(json.dumps(x) for x in lines))
    assert main(["data", "convert", "jsonl", "--annotations", str(root / "a.jsonl"), "--media", str(root / "media"),
                 "--out", str(root / "shards" / "{split}-%06d.tar"), "--samples-per-shard", "2", "--no-progress"]) == 0
    return root / "shards"


def test_eval_data_naming_the_runs_own_test_shards_is_not_other_data(shard_folder, monkeypatch):
    folder = str(shard_folder)
    pattern = str(shard_folder / "test-{000000..000001}.tar")
    assert same_shards(pattern, folder, "test")
    assert out_dir_qualifiers("caption", "caption", pattern, folder, None, "test") == []
    monkeypatch.chdir(shard_folder.parent)  # a relative pattern names the same files
    assert out_dir_qualifiers("caption", "caption", "shards/test-{000000..000001}.tar", folder, None, "test") == []
    # part of the split, or the training shards, is other data: a folder of its own
    assert out_dir_qualifiers("caption", "caption", str(shard_folder / "test-000000.tar"), folder, None, "test") != []
    assert out_dir_qualifiers("caption", "caption", str(shard_folder / "train-{000000..000003}.tar"), folder, None,
                              "test") != []


def test_data_bench_on_few_samples_says_it_is_start_up_dominated(shard_folder, capsys):
    assert main(["data", "bench", str(shard_folder), "--split", "train"]) == 0
    out = capsys.readouterr().out
    assert "only 8 samples" in out and "start-up" in out


def test_eval_every_zero_is_accepted():
    """(tests/e2e/test_cpu_tiny_commands.py checks that such a run evaluates nothing, not even at the end)"""
    from scaling.config import load_config
    from scaling.config.base import ConfigError

    assert load_config(CPU_TINY, ["train.eval_every=0"]).train.eval_every == 0
    with pytest.raises(ConfigError, match=r"0 \(off\)"):
        load_config(CPU_TINY, ["train.eval_every=-1"])
