"""Exact resume: a loader rebuilt from state_dict() yields exactly the batches not yet consumed."""

from __future__ import annotations

import json

import pytest
import torch

from scaling.config import load_config
from scaling.data import shards as shards_mod
from scaling.data.plan import plan_rank
from scaling.data.stream import iter_plan
from scaling.data.synthetic import write_shards
from scaling.models.tiny import word_tokenizer
from scaling.training.loaders import build_loader


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    d = tmp_path_factory.mktemp("resume")
    write_shards(str(d), [9, 8, 9, 5], split="train", image_size=36)
    return str(d)


@pytest.fixture(scope="module")
def tok():
    return word_tokenizer()


def cfg_for(root, **over):
    items = {"model.encoder": "tiny-vit", "data.train": root, "train.micro_batch": 3, "data.num_workers": 2,
             "data.shuffle_buffer": 5, **over}
    return load_config(None, [f"{k}={v}" for k, v in items.items()])


def same_batch(a, b):
    assert a["ids"] == b["ids"]
    for key in ("input_ids", "labels", "attention_mask", "pixel_values"):
        assert torch.equal(a[key], b[key]), key


@pytest.mark.filterwarnings("ignore:This DataLoader will create")
@pytest.mark.parametrize("k,workers", [(3, 2), (4, 2), (2, 0), (1, 3)])
def test_resume_yields_exactly_the_rest(root, tok, k, workers):
    cfg = cfg_for(root, **{"data.num_workers": workers})
    full = list(build_loader(cfg, tok, "train", 1, 2, True))
    loader = build_loader(cfg, tok, "train", 1, 2, True)
    it = iter(loader)
    head = [next(it) for _ in range(k)]
    state = json.loads(json.dumps(loader.state_dict()))  # JSON-able
    del it
    assert state["batches"] == k and state["samples"] == 3 * k and state["epoch"] == 0
    assert len(json.dumps(state)) < 1000
    resumed = build_loader(cfg, tok, "train", 1, 2, True)
    resumed.load_state_dict(state)
    rest = list(resumed)
    assert len(head) + len(rest) == len(full) == len(resumed)
    for a, b in zip(head + rest, full):
        same_batch(a, b)  # same samples, same augmentation, same answer draws
    assert resumed.epoch == 1


def test_resume_at_epoch_boundary_and_next_epoch(root, tok):
    cfg = cfg_for(root)
    loader = build_loader(cfg, tok, "train", 0, 1, True)
    epoch0 = list(loader)
    it = iter(loader)
    first_of_epoch1 = [next(it) for _ in range(2)]
    state = loader.state_dict()
    del it
    assert state["epoch"] == 1 and state["batches"] == 2
    reference = build_loader(cfg, tok, "train", 0, 1, True, epoch=1)
    expected = list(reference)
    resumed = build_loader(cfg, tok, "train", 0, 1, True)
    resumed.load_state_dict(state)
    rest = list(resumed)
    for a, b in zip(first_of_epoch1 + rest, expected):
        same_batch(a, b)
    assert len(first_of_epoch1) + len(rest) == len(expected) == len(epoch0)
    # a state saved right after the last batch of an epoch resumes at the next epoch
    done = build_loader(cfg, tok, "train", 0, 1, True)
    done.load_state_dict({**state, "epoch": 0, "batches": len(epoch0), "cursors": [0, 0]})
    same_batch(next(iter(done)), expected[0])


def test_resume_skips_consumed_shards_without_reading(root, monkeypatch):
    src = shards_mod.resolve_split(root, "train")
    kept = [list(range(s.num_samples)) for s in src.shards]
    plans, _ = plan_rank(kept, train=True, seed=0, epoch=0, rank=0, world_size=1, num_workers=1, batch_size=3,
                         shuffle_buffer=2)
    plan = plans[0]
    opened = []
    real = shards_mod.read_positions

    def spy(url, positions=None, select=None):
        positions = list(positions) if positions is not None else None
        opened.append((url, positions))
        return real(url, positions, select)

    monkeypatch.setattr("scaling.data.stream.read_positions", spy)
    keys_full = [key for _, _, key in iter_plan(plan, src.shards, 0)]
    first_segment = plan.segments[0]
    start = plan.segment_range(0)[1] + 2  # well past the first shard of the order (buffer of 2)
    opened.clear()
    keys_rest = [key for _, _, key in iter_plan(plan, src.shards, start)]
    assert keys_rest == keys_full[start:]
    assert src.shards[first_segment.shard].url not in [u for u, _ in opened]  # never opened again
    requested = sum(len(p) for _, p in opened)
    assert requested == plan.size - start  # only unseen positions are read


def test_layout_change_resumes_approximately(root, tok, caplog):
    cfg = cfg_for(root)
    loader = build_loader(cfg, tok, "train", 0, 2, True)
    it = iter(loader)
    [next(it) for _ in range(2)]
    state = loader.state_dict()
    del it
    other = build_loader(cfg_for(root, **{"data.num_workers": 1}), tok, "train", 0, 2, True)
    other.load_state_dict(state)
    assert "layout changed" in caplog.text
    assert other.state_dict()["batches"] == 2
    assert len(list(other)) == len(other) - 2


def test_bad_state_is_rejected(root, tok):
    from scaling.config.base import ConfigError

    loader = build_loader(cfg_for(root), tok, "train", 0, 1, True)
    with pytest.raises(ConfigError):
        loader.load_state_dict({"version": 99})


@pytest.mark.parametrize("before,change,named", [
    ({}, {"data.shuffle_buffer": 1}, "shuffle_buffer 5→1"),
    ({}, {"data.length_bucketing": True}, "bucket_batches 0→8"),
    ({"data.length_bucketing": True}, {"data.bucket_batches": 2}, "bucket_batches 8→2"),
    ({}, {"data.samples_per_epoch": 40}, "samples_per_epoch 0→40"),
], ids=["shuffle_buffer", "length_bucketing", "bucket_batches", "samples_per_epoch"])
def test_order_setting_change_resumes_approximately(root, tok, caplog, before, change, named):
    loader = build_loader(cfg_for(root, **{"data.num_workers": 0, **before}), tok, "train", 0, 1, True)
    it = iter(loader)
    [next(it) for _ in range(3)]
    state = loader.state_dict()
    del it
    other = build_loader(cfg_for(root, **{"data.num_workers": 0, **before, **change}), tok, "train", 0, 1, True)
    other.load_state_dict(state)
    assert "layout changed" in caplog.text and named in caplog.text
    assert other.state_dict()["batches"] == 3


def test_state_without_order_settings_resumes_exactly(root, tok, caplog):
    cfg = cfg_for(root, **{"data.num_workers": 0})
    full = list(build_loader(cfg, tok, "train", 0, 1, True))
    loader = build_loader(cfg, tok, "train", 0, 1, True)
    it = iter(loader)
    head = [next(it) for _ in range(3)]
    state = loader.state_dict()
    del it
    old = {k: v for k, v in state.items() if k not in ("shuffle_buffer", "bucket_batches", "samples_per_epoch")}
    resumed = build_loader(cfg, tok, "train", 0, 1, True)
    resumed.load_state_dict(old)  # a checkpoint written before the order settings were recorded
    assert "predates" in caplog.text and "layout changed" not in caplog.text
    for a, b in zip(head + list(resumed), full, strict=True):
        same_batch(a, b)
