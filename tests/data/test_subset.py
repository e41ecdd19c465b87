"""Low-data subsets: deterministic, seeded, identical on every rank and run, nested, right size."""

from __future__ import annotations

import math
import subprocess
import sys

import pytest

from scaling.config import load_config
from scaling.data.subset import keep, kept_positions, subset_value
from scaling.data.synthetic import write_shards
from scaling.models.tiny import word_tokenizer
from scaling.training.loaders import build_loader

IDS = [f"coco-{i}" for i in range(20000)]


@pytest.mark.parametrize("fraction", [0.01, 0.1, 0.5])
def test_subset_size_is_binomial(fraction):
    n = sum(keep(i, fraction, 0) for i in IDS)
    sd = math.sqrt(len(IDS) * fraction * (1 - fraction))
    assert abs(n - fraction * len(IDS)) < 4 * sd


def test_subsets_are_nested_seeded_and_stable_across_processes():
    small = {i for i in IDS if keep(i, 0.01, 0)}
    big = {i for i in IDS if keep(i, 0.1, 0)}
    assert small < big
    other_seed = {i for i in IDS if keep(i, 0.01, 1)}
    assert other_seed != small and len(other_seed & small) < len(small) / 2
    code = "from scaling.data.subset import subset_value; print(repr(subset_value('coco-123', 0)))"
    env_runs = {subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                               env={"PYTHONHASHSEED": str(h), "PATH": ""}).stdout.strip() for h in (1, 2)}
    assert env_runs == {repr(subset_value("coco-123", 0))}
    assert kept_positions(["a", "b", "c"], 1.0) == [0, 1, 2]


def test_loader_subset_identical_on_every_rank(tmp_path):
    write_shards(str(tmp_path), [40, 40, 40, 30])
    tok = word_tokenizer()
    cfg = load_config(None, ["model.encoder=tiny-vit", f"data.train={tmp_path}", "data.fraction=0.3", "data.subset_seed=5",
                             "train.micro_batch=2", "data.num_workers=2"])
    want = {f"s{i:05d}" for i in range(150) if keep(f"s{i:05d}", 0.3, 5)}
    seen = []
    lengths = set()
    for rank in range(2):
        loader = build_loader(cfg, tok, "train", rank, 2, True)
        assert loader.num_samples == len(want)
        lengths.add(len(loader))
        seen += [i for b in loader for i in b["ids"]]
    assert lengths == {len(want) // 4}
    assert len(seen) == len(set(seen)) == len(want) // 4 * 4
    assert set(seen) <= want
    # evaluation ignores data.fraction
    ev = load_config(None, ["model.encoder=tiny-vit", f"data.val={tmp_path}#train", "data.fraction=0.3",
                            "eval.batch_size=50", "data.num_workers=0"])
    assert sum(len(b["ids"]) for b in build_loader(ev, tok, "val", 0, 1, False)) == 150
