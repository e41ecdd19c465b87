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
from scaling.data.synthetic import make_image, write_coco, write_jsonl
from scaling.models.tiny import word_tokenizer
from scaling.training.loaders import build_loader

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


# ------------------------------------------------------------------ malformed json / cached features


def _npy(shape=(2, 1, 4, 8)) -> bytes:
    import numpy as np

    buf = io.BytesIO()
    np.save(buf, np.zeros(shape, np.float16))
    return buf.getvalue()


def _safetensors_without_features() -> bytes:
    import numpy as np
    from safetensors.numpy import save

    return save({"feat": np.zeros((1, 1, 2, 2), np.float16)})


MALFORMED = {
    "truncated npy": ({"json": b'{"id": "a", "answers": ["x"]}', "npy": _npy()[:60]}, True, "cached features"),
    "safetensors without 'features'": ({"json": b'{"id": "a", "answers": ["x"]}',
                                        "safetensors": _safetensors_without_features()}, True, "no tensor 'features'"),
    "answers null": ({"json": b'{"id": "a", "answers": null}'}, False, "'answers'"),
    "json is a list": ({"json": b'["a"]'}, False, "must be an object"),
}


@pytest.mark.parametrize("train", [True, False])
@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_decoder_turns_any_sample_problem_into_a_sample_error(case, train):
    from scaling.data.decode import SampleDecoder, SampleError

    members, features, reason = MALFORMED[case]
    decoder = SampleDecoder(None, train, "caption", use_features=features)
    with pytest.raises(SampleError, match=reason) as err:
        decoder({"__key__": "shard/k0007", "__url__": "u", **members}, random.Random(0))
    assert err.value.key == "shard/k0007" and "shard/k0007" in str(err.value)


def _feature_shards(d, bad: dict[int, dict[str, bytes]], n=8):
    writer = ShardSetWriter(os.path.join(d, "train-%06d.tar"), d, samples_per_shard=4)
    for i in range(n):
        members = bad.get(i) or {"npy": _npy()}
        writer.write(f"k{i:04d}", sample_record(f"id{i}", "caption", "x", "train", ["a cat"]), members)
    return writer, writer.close()


def test_corrupt_cached_features_are_skipped_and_counted(tmp_path):
    from scaling.data.features import feature_signature
    from scaling.models.transforms import encoder_inputs

    d = str(tmp_path)
    writer, entries = _feature_shards(d, {3: {"npy": _npy()[:100]}, 5: {"safetensors": _safetensors_without_features()}})
    cfg = cfg_for(d, **{"data.features": d, "data.use_features": "true", "data.num_workers": 0})
    for split in ("train", "val"):
        update_index(d, split, {"task": "caption", "modality": "image", "num_samples": 8, "features": feature_signature(cfg.model, encoder_inputs(cfg.model, cfg.data)),
                                "shards": [e.__dict__ for e in entries]}, writer.samples)
    tok = word_tokenizer()
    val = build_loader(cfg, tok, "val", 0, 1, False)
    assert sorted(i for b in val for i in b["ids"]) == [f"id{i}" for i in range(8) if i not in (3, 5)]
    assert val.skipped == 2 and any("k0003" in k and "cached features" in k for k in val.skipped_keys)
    train = build_loader(cfg, tok, "train", 0, 1, True)
    assert len(list(train)) == len(train) == 4 and train.skipped >= 2


def test_cache_features_leaves_out_malformed_json(tmp_path):
    import json
    import tarfile

    from scaling.data.decode import SampleDecoder
    from scaling.data.features import _ShardSamples
    from scaling.data.shards import resolve_split
    from scaling.models.transforms import media_spec

    jsons = [json.dumps(sample_record("id0", "caption", "x", "train", ["a cat"])).encode(),
             b'{"id": "id1", "answers": null}', b'["id2"]',
             json.dumps(sample_record("id3", "caption", "x", "train", ["a dog"])).encode()]
    img, _, _ = make_image(random.Random(0), 16)
    buf = io.BytesIO()
    img.save(buf, format="JPEG")
    with tarfile.open(tmp_path / "train-000000.tar", "w") as tar:
        for i, js in enumerate(jsons):
            for ext, data in (("jpg", buf.getvalue()), ("json", js)):
                info = tarfile.TarInfo(f"k{i:04d}.{ext}")
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    update_index(str(tmp_path), "train", {"task": "caption", "num_samples": 4,
                                          "shards": [{"name": "train-000000.tar", "num_samples": 4, "bytes": 0}]}, {})
    cfg = cfg_for(str(tmp_path))
    decoder = SampleDecoder(media_spec(cfg.model, cfg.data), False, "caption", cfg.data)
    items = list(_ShardSamples(resolve_split(str(tmp_path), "train").shards, decoder, views=1, seed=0))
    assert [it["id"] for it in items if "error" not in it] == ["id0", "id3"]
    errors = [it["error"] for it in items if "error" in it]
    assert "k0001" in errors[0] and "'answers'" in errors[0]
    assert "k0002" in errors[1] and "must be an object" in errors[1]


# ------------------------------------------------------------------ a share inside a lost shard


@pytest.fixture(scope="module")
def lost_shard(tmp_path_factory):
    from scaling.data.synthetic import write_shards

    d = str(tmp_path_factory.mktemp("lost"))
    write_shards(d, [8, 8, 8], split="train", image_size=16)
    os.remove(os.path.join(d, "train-000001.tar"))  # e.g. a failed copy
    return d


def _lost_cfg(d, **over):
    return cfg_for(d, **{"data.num_workers": 0, "data.shuffle_buffer": 4, **over})


def _rank_reading_only(cfg, tok, shard: int) -> int:
    """The rank (of 3, one worker each) whose whole share is ``shard``."""
    for rank in range(3):
        plans, _ = build_loader(cfg, tok, "train", rank, 3, True).dataset.plans(0)
        if {s.shard for s in plans[0].segments} == {shard}:
            return rank
    raise AssertionError(f"no rank reads only shard {shard}")


def test_a_rank_inside_a_lost_shard_reads_replacements(lost_shard, caplog):
    tok = word_tokenizer()
    cfg = _lost_cfg(lost_shard)
    _rank_reading_only(cfg, tok, 1)
    for rank in range(3):  # 8 samples per rank: one rank's whole share is the lost shard
        loader = build_loader(cfg, tok, "train", rank, 3, True)
        batches = [b["ids"] for b in loader]
        assert len(batches) == len(loader) == 4 and all(len(b) == 2 for b in batches)
        assert not {f"s{i:05d}" for i in range(8, 16)} & {i for b in batches for i in b}
    assert "none of its 8 samples could be decoded" in caplog.text and "train-000001.tar" in caplog.text


def test_replacements_resume_exactly(lost_shard):
    tok = word_tokenizer()
    cfg = _lost_cfg(lost_shard)
    lost_rank = _rank_reading_only(cfg, tok, 1)
    full = [b["ids"] for b in build_loader(cfg, tok, "train", lost_rank, 3, True)]
    loader = build_loader(cfg, tok, "train", lost_rank, 3, True)
    it = iter(loader)
    head = [next(it)["ids"] for _ in range(2)]
    state = loader.state_dict()
    del it
    assert state["cursors"][0] < 0  # in the replacement order
    resumed = build_loader(cfg, tok, "train", lost_rank, 3, True)
    resumed.load_state_dict(state)
    assert head + [b["ids"] for b in resumed] == full


@pytest.mark.filterwarnings("ignore:This DataLoader will create")
def test_a_worker_inside_a_lost_shard_keeps_the_batch_count(lost_shard):
    tok = word_tokenizer()
    cfg = _lost_cfg(lost_shard, **{"data.num_workers": 4})
    loader = build_loader(cfg, tok, "train", 0, 1, True)
    plans, _ = loader.dataset.plans(0)
    assert any({s.shard for s in p.segments} == {1} for p in plans)  # a worker's whole share is lost
    assert len(list(loader)) == len(loader) == 12


def test_all_shard_files_missing_is_a_config_error_not_worker_tracebacks(root, tmp_path):
    """Some shards missing: skipped (above). All of them: a ConfigError naming the files, before any worker starts."""
    import shutil

    shutil.copy(os.path.join(root, "index.json"), tmp_path / "index.json")  # the index, without its shards
    with pytest.raises(ConfigError) as err:
        build_loader(cfg_for(str(tmp_path)), word_tokenizer(), "train", 0, 1, True)
    (msg,) = err.value.problems
    assert "data.train" in msg and "none of its 3 shard file(s) exists" in msg and "train-000000.tar" in msg
    assert "scaling data inspect" in msg
    with pytest.raises(ConfigError, match="none of its 3 shard file"):
        build_loader(cfg_for(str(tmp_path)), word_tokenizer(), "val", 0, 1, False)
