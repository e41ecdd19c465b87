"""Streaming loader: rank/worker splitting, equal batch counts, reproducible order, eval coverage."""

from __future__ import annotations

import collections
import json
import os

import pytest
import torch

from scaling.config import load_config
from scaling.data.plan import balanced_ranges, plan_rank, shuffle_buffer_order
from scaling.data.synthetic import write_shards
from scaling.models.tiny import word_tokenizer
from scaling.training.loaders import build_loader

SIZES = [7, 7, 7, 2]  # 23 samples in uneven shards
N = sum(SIZES)


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    root = tmp_path_factory.mktemp("uneven")
    write_shards(str(root), SIZES, split="train", image_size=36)
    write_shards(str(root), [5, 3, 6], split="val", image_size=36, prefix="v")
    return str(root)


@pytest.fixture(scope="module")
def tok():
    return word_tokenizer()


def cfg_for(root, **over):
    items = {"model.encoder": "tiny-vit", "data.train": root, "data.val": root, "train.micro_batch": 2,
             "eval.batch_size": 3, "data.num_workers": 2, "data.shuffle_buffer": 4, **over}
    return load_config(None, [f"{k}={v}" for k, v in items.items()])


def run_epoch(cfg, tok, split, rank, world, train, epoch=0):
    loader = build_loader(cfg, tok, split, rank, world, train, epoch)
    return loader, [b["ids"] for b in loader]


@pytest.mark.parametrize("world,workers", [(2, 2), (3, 2), (2, 0)])
def test_train_no_duplicates_and_equal_batch_counts(shards, tok, world, workers):
    cfg = cfg_for(shards, **{"data.num_workers": workers})
    expected = N // (world * 2)
    seen = []
    for rank in range(world):
        loader, batches = run_epoch(cfg, tok, "train", rank, world, True)
        assert len(loader) == expected
        assert len(batches) == expected, f"rank {rank} yielded {len(batches)} batches, expected {expected}"
        assert all(len(b) == 2 for b in batches)
        seen += [i for b in batches for i in b]
    assert len(seen) == len(set(seen)), "a sample was seen twice in one epoch"
    assert len(seen) == expected * world * 2
    assert set(seen) <= {f"s{i:05d}" for i in range(N)}


def test_union_covers_all_samples_with_drop_last_only(shards, tok):
    # 2 ranks x 2 workers, micro_batch 1: floor(23/2) = 11 batches per rank → 22 of 23 samples
    cfg = cfg_for(shards, **{"train.micro_batch": 1})
    seen = []
    for rank in range(2):
        _, batches = run_epoch(cfg, tok, "train", rank, 2, True)
        seen += [i for b in batches for i in b]
    assert len(seen) == 22 and len(set(seen)) == 22


def test_plan_covers_everything_exactly_once():
    kept = [list(range(n)) for n in SIZES]
    for world in (1, 2, 3):
        for workers in (1, 2, 3):
            got = []
            for rank in range(world):
                plans, nb = plan_rank(kept, train=True, seed=1, epoch=2, rank=rank, world_size=world, num_workers=workers,
                                      batch_size=2, shuffle_buffer=3)
                assert nb == N // (world * 2)
                for p in plans:
                    assert sorted(p.order) == list(range(p.size))
                    assert p.size >= p.quota * 2
                    got += [(s.shard, pos) for s in p.segments for pos in s.positions]
            assert sorted(got) == sorted((s, p) for s, n in enumerate(SIZES) for p in range(n))


def test_shuffle_buffer_order_is_bounded_permutation():
    import random

    order = shuffle_buffer_order(100, 8, random.Random(0))
    assert sorted(order) == list(range(100))
    assert order != list(range(100))
    assert all(pos < k + 8 for k, pos in enumerate(order))
    assert balanced_ranges(23, 3) == [(0, 7), (7, 15), (15, 23)]


def test_order_reproducible_and_changes_with_epoch(shards, tok):
    cfg = cfg_for(shards)
    _, a = run_epoch(cfg, tok, "train", 0, 2, True, epoch=0)
    _, b = run_epoch(cfg, tok, "train", 0, 2, True, epoch=0)
    _, c = run_epoch(cfg, tok, "train", 0, 2, True, epoch=1)
    assert a == b
    assert a != c
    cfg2 = cfg_for(shards, **{"train.seed": 7})
    _, d = run_epoch(cfg2, tok, "train", 0, 2, True, epoch=0)
    assert a != d


def test_epoch_advances_and_set_epoch(shards, tok):
    cfg = cfg_for(shards)
    loader = build_loader(cfg, tok, "train", 0, 1, True)
    first = [b["ids"] for b in loader]
    assert loader.epoch == 1 and loader.state_dict()["batches"] == 0
    second = [b["ids"] for b in loader]
    assert first != second and len(first) == len(second) == N // 2
    loader.set_epoch(0)
    assert [b["ids"] for b in loader] == first


@pytest.mark.parametrize("world", [1, 2, 3])
def test_eval_covers_every_sample_exactly_once(shards, tok, world):
    cfg = cfg_for(shards)
    seen = []
    counts = []
    for rank in range(world):
        loader, batches = run_epoch(cfg, tok, "val", rank, world, False)
        ids = [i for b in batches for i in b]
        counts.append(len(ids))
        seen += ids
    assert sorted(seen) == sorted(f"v{i:05d}" for i in range(14))
    assert max(counts) - min(counts) <= 1


def test_eval_limit(shards, tok):
    cfg = cfg_for(shards)
    seen = []
    for rank in range(2):
        loader = build_loader(cfg, tok, "val", rank, 2, False, limit=5)
        seen += [i for b in loader for i in b["ids"]]
    assert sorted(seen) == [f"v{i:05d}" for i in range(5)]


def test_batch_contents(shards, tok):
    cfg = cfg_for(shards)
    batch = next(iter(build_loader(cfg, tok, "train", 0, 1, True)))
    assert set(batch) == {"input_ids", "attention_mask", "labels", "pixel_values", "ids"}
    assert batch["pixel_values"].shape == (2, 3, 32, 32) and batch["pixel_values"].dtype == torch.float32
    assert batch["input_ids"].shape == batch["labels"].shape == batch["attention_mask"].shape
    ev = next(iter(build_loader(cfg, tok, "val", 0, 1, False)))
    assert set(ev) == {"input_ids", "attention_mask", "pixel_values", "ids", "answers", "task"}
    assert ev["task"] == "caption" and all(len(a) == 2 for a in ev["answers"])


def test_url_patterns_and_pipe(shards, tok, tmp_path):
    pattern = os.path.join(shards, "train-{000000..000003}.tar")
    cfg = cfg_for(pattern, **{"data.num_workers": 0})
    _, a = run_epoch(cfg, tok, "train", 0, 1, True)
    cfg_dir = cfg_for(shards, **{"data.num_workers": 0})
    _, b = run_epoch(cfg_dir, tok, "train", 0, 1, True)
    assert a == b  # the pattern finds the counts in index.json next to the shards
    pipe = "pipe:cat " + pattern
    cfg_pipe = cfg_for(pipe, **{"data.num_workers": 0, "data.index": os.path.join(shards, "index.json"), "data.allow_pipe": True})
    _, c = run_epoch(cfg_pipe, tok, "train", 0, 1, True)
    assert c == a


def test_shards_without_index_are_counted(shards, tok, tmp_path):
    import shutil

    for name in os.listdir(shards):
        if name.startswith("train-") and name.endswith(".tar"):
            shutil.copy(os.path.join(shards, name), tmp_path / name)
    cfg = cfg_for(str(tmp_path / "train-{000000..000003}.tar"), **{"data.num_workers": 0})
    loader, batches = run_epoch(cfg, tok, "train", 0, 1, True)
    assert loader.num_samples == N and len(batches) == N // 2


def test_length_bucketing_groups_similar_lengths(tmp_path, tok):
    import random

    from scaling.data.plan import bucket_order

    lengths = [random.Random(i).randrange(1, 30) for i in range(64)]
    order = bucket_order(list(range(64)), lengths, 4, 4, random.Random(0))
    assert sorted(order) == list(range(64))
    spread = [max(lengths[p] for p in order[i:i + 4]) - min(lengths[p] for p in order[i:i + 4]) for i in range(0, 64, 4)]
    plain = [max(lengths[i:i + 4]) - min(lengths[i:i + 4]) for i in range(0, 64, 4)]
    assert sum(spread) < sum(plain) / 2
    write_shards(str(tmp_path), [6, 6], task="vqa")
    cfg = cfg_for(str(tmp_path), **{"data.length_bucketing": True, "data.num_workers": 0})
    loader, batches = run_epoch(cfg, tok, "train", 0, 1, True)
    assert len(batches) == 6 and len({i for b in batches for i in b}) == 12


def test_samples_per_epoch_cycles(shards, tok):
    cfg = cfg_for(shards, **{"data.samples_per_epoch": 60})
    loader, batches = run_epoch(cfg, tok, "train", 0, 2, True)
    assert len(batches) == 15 == len(loader)
    counts = collections.Counter(i for b in batches for i in b)
    assert max(counts.values()) - min(counts.values()) <= 1  # every sample of the rank used about equally


def test_modality_mismatch_is_a_config_error(shards, tok):
    from scaling.config.base import ConfigError

    cfg = cfg_for(shards, **{"model.encoder": "tiny-ast"})
    with pytest.raises(ConfigError, match="image samples"):
        build_loader(cfg, tok, "train", 0, 1, True)
    with pytest.raises(ConfigError, match="data.test is not set"):
        build_loader(cfg_for(shards), tok, "test", 0, 1, False)
    index = json.load(open(os.path.join(shards, "index.json")))
    assert index["splits"]["train"]["num_samples"] == N


def test_http_shards_find_their_index(shards, tok):
    import functools
    import http.server
    import threading

    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=shards)
    handler.log_message = lambda *a, **k: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/train-{{000000..000003}}.tar"
        cfg = cfg_for(url, **{"data.num_workers": 0})
        loader, batches = run_epoch(cfg, tok, "train", 0, 1, True)
        _, local = run_epoch(cfg_for(shards, **{"data.num_workers": 0}), tok, "train", 0, 1, True)
        assert loader.meta.get("dataset") == "synthetic"  # the index was found over http
        assert batches == local
    finally:
        server.shutdown()


def test_a_model_without_perception_reads_text_only(shards, tok):
    """The blind baseline (inject 'none') trains on the same shards: no media decoded, none batched."""
    seeing = next(iter(build_loader(cfg_for(shards, **{"data.num_workers": 0}), tok, "train", 0, 1, True)))
    assert "pixel_values" in seeing
    blind_cfg = cfg_for(shards, **{"data.num_workers": 0, "model.method": "blind"})
    batch = next(iter(build_loader(blind_cfg, tok, "train", 0, 1, True)))
    assert not {"pixel_values", "video", "audio", "features"} & set(batch)
    assert batch["input_ids"].shape == batch["labels"].shape and (batch["labels"] != -100).any()
    evals = next(iter(build_loader(blind_cfg, tok, "val", 0, 1, False)))
    assert "pixel_values" not in evals and len(evals["ids"]) == 3


@pytest.fixture(scope="module")
def big_shard(tmp_path_factory):
    """One shard of 4 samples of 256 KiB: far more than a pipe holds, so a command still writes when
    a reader stops after the first sample."""
    from scaling.data.shards import ShardSetWriter, sample_record

    root = str(tmp_path_factory.mktemp("big"))
    writer = ShardSetWriter(os.path.join(root, "train-%06d.tar"), root)
    for i in range(4):
        writer.write(f"k{i:04d}", sample_record(f"id{i}", "caption", "x", "train", ["a cat"]), {"bin": os.urandom(1 << 18)})
    writer.close()
    return os.path.join(root, "train-000000.tar")


def test_pipe_shard_read_part_way_closes_quietly(big_shard):
    from scaling.data.shards import read_positions

    url = f"pipe:cat {big_shard} || exit 23"  # like curl: exit 23 when the pipe closes while it writes
    got = list(read_positions(url, [0]))  # reading stops after the first sample
    assert [(p, key.rsplit("/", 1)[-1]) for p, _, key in got] == [(0, "k0000")] and got[0][1] is not None
    reader = read_positions(url, [0, 1, 2, 3])
    assert next(reader)[0] == 0
    reader.close()  # the loader stops (a break, or its worker's positions are done)


def test_pipe_failure_of_a_fully_read_shard_is_reported(big_shard):
    from scaling.data.shards import ShardReadError, read_positions

    with pytest.raises(ShardReadError, match="exit 3"):
        list(read_positions(f"pipe:cat {big_shard}; exit 3", None))
    got = list(read_positions(f"pipe:cat {big_shard}; exit 3", [0, 1, 2, 3]))
    assert [p for p, sample, _ in got if sample is None] == [3] and "exit 3" in got[-1][2]


@pytest.mark.parametrize("command", ["pipe:cat {shards}", "pipe:aws s3 cp s3://bucket{shards} -",
                                     "pipe:curl -s 'file://{shards}' -o -"])
def test_pipe_urls_find_their_index_entries(shards, monkeypatch, command):
    """The shard name may be followed by arguments (docs/data.md's `pipe:aws s3 cp ... -`)."""
    from scaling.data import shards as shards_mod

    scanned = []
    monkeypatch.setattr(shards_mod, "count_samples", lambda url: scanned.append(url) or (0, [], []))
    source = command.format(shards=os.path.join(shards, "train-{000000..000003}.tar"))
    src = shards_mod.resolve_split(source, "train", os.path.join(shards, "index.json"), allow_pipe=True)
    assert not scanned, "the shards were scanned instead of found in the index"
    assert [s.num_samples for s in src.shards] == SIZES
    assert src.meta.get("task") == "caption" and src.meta.get("dataset") == "synthetic"
