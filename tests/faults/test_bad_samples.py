"""Fault campaign round three, data (issue 24 items 5-6): malformed sample records, 16-bit images, NaN audio and
unusable converter answers are bad samples, skipped and counted with their key and reason, never a crash or
silently wrong data."""

import io
import json
import random
import tarfile

import numpy as np
import pytest
from PIL import Image

from scaling.config import load_config
from scaling.data.decode import SampleDecoder, SampleError
from scaling.data.shards import resolve_split
from scaling.data.synthetic import make_image

# the 13 variants of the campaign: all but the first three crashed start-up (resolve_split) on today's code
BAD_JSON = {
    "answers-int": json.dumps({"id": "b0", "task": "caption", "answers": [42]}).encode(),
    "answers-null": json.dumps({"id": "b1", "task": "caption", "answers": [None]}).encode(),
    "answers-nested": json.dumps({"id": "b2", "task": "caption", "answers": [["red", "blue"]]}).encode(),
    "answers-string": json.dumps({"id": "b3", "task": "caption", "answers": "a cat"}).encode(),
    "prompt-number": json.dumps({"id": "b4", "task": "caption", "prompt": 7, "answers": ["a cat"]}).encode(),
    "question-list": json.dumps({"id": "b5", "task": "vqa", "question": ["what"], "answers": ["a cat"]}).encode(),
    "invalid-json": b'{"id": "b6", "answers": [',
    "json-list": b"[1, 2]",
    "json-null": b"null",
    "json-number": b"42",
    "invalid-utf8": b'{"id": "b7", "answers": ["\xff\xfe"]}',
    "task-object": json.dumps({"id": "b8", "task": {"x": 1}, "answers": ["a cat"]}).encode(),
    "empty": b"",
}


def _jpg(rng):
    img, color, shape = make_image(rng, 36)
    buf = io.BytesIO()
    img.save(buf, format="JPEG")
    return buf.getvalue(), f"a {color} {shape}"


def _write_tar(path, samples):
    with tarfile.open(path, "w", format=tarfile.USTAR_FORMAT) as tar:
        for key, members in samples:
            for ext, data in sorted(members.items()):
                info = tarfile.TarInfo(f"{key}.{ext}")
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))


@pytest.fixture()
def bad_shard(tmp_path):
    """One shard without an index: 4 good samples around the 13 bad records."""
    rng = random.Random(0)
    samples = []
    for i in range(2):
        jpg, answer = _jpg(rng)
        samples.append((f"good{i}", {"json": json.dumps({"id": f"g{i}", "task": "caption", "answers": [answer]}).encode(),
                                      "jpg": jpg}))
    for name, raw in BAD_JSON.items():
        samples.append((name, {"json": raw, "jpg": _jpg(rng)[0]}))
    for i in range(2, 4):
        jpg, answer = _jpg(rng)
        samples.append((f"good{i}", {"json": json.dumps({"id": f"g{i}", "task": "caption", "answers": [answer]}).encode(),
                                      "jpg": jpg}))
    path = str(tmp_path / "val-000000.tar")
    _write_tar(path, samples)
    return path


def test_start_up_counts_a_shard_with_malformed_records_without_an_index(bad_shard):
    src = resolve_split(bad_shard, "val", need_ids=True)
    assert src.num_samples == 4 + len(BAD_JSON)
    assert src.shards[0].ids[:2] == ["g0", "g1"]


def test_the_loader_skips_and_counts_each_malformed_record(bad_shard):
    from scaling.models.tiny import word_tokenizer
    from scaling.training.loaders import build_loader

    cfg = load_config(None, ["model.encoder=tiny-vit", f"data.val={bad_shard}", "eval.batch_size=4", "data.num_workers=0"])
    loader = build_loader(cfg, word_tokenizer(), "val", 0, 1, False)
    ids = [i for b in loader for i in b["ids"]]
    assert sorted(ids) == ["g0", "g1", "g2", "g3"]
    assert loader.skipped == len(BAD_JSON)
    for name in BAD_JSON:
        assert any(f":{name} (" in k for k in loader.skipped_keys), (name, loader.skipped_keys)


def test_data_inspect_reports_each_bad_sample_with_its_key_and_reason(bad_shard, capsys):
    from scaling.cli.main import main

    capsys.readouterr()
    main(["data", "inspect", bad_shard])
    out = capsys.readouterr().out
    assert f"{4 + len(BAD_JSON)} samples in 1 shards" in out, out
    assert f"BAD SAMPLES ({len(BAD_JSON)}" in out and "cannot read" not in out, out
    for name in BAD_JSON:
        assert f"{bad_shard}:{name}: " in out, name
    assert "it holds 42" in out and "bad json" in out and "'prompt' in the json must be a string" in out


def _png16(value):
    buf = io.BytesIO()
    Image.fromarray(np.full((36, 36), value, np.uint16)).save(buf, format="PNG")
    return buf.getvalue()


def test_a_16_bit_image_is_scaled_not_clipped_and_inspect_reports_its_mode(tmp_path, capsys):
    from scaling.cli.main import main
    from scaling.data.augment import to_rgb

    img = Image.open(io.BytesIO(_png16(30000)))
    assert img.mode.startswith("I")
    rgb = np.asarray(to_rgb(img))
    assert rgb.shape == (36, 36, 3) and abs(rgb.mean() - 30000 * 255 / 65535) < 1  # mid grey, not white (255)
    path = str(tmp_path / "val-000000.tar")
    _write_tar(path, [("k0", {"json": json.dumps({"id": "0", "answers": ["grey"]}).encode(), "png": _png16(30000)})])
    capsys.readouterr()
    main(["data", "inspect", path])
    assert "36x36 I;16 (16-bit, scaled to 8 bits)" in capsys.readouterr().out
    # through the decoder: the model sees mid grey, as an 8-bit mid-grey picture gives
    cfg = load_config(None, ["model.encoder=tiny-vit"])
    from scaling.models.transforms import media_spec

    decoder = SampleDecoder(media_spec(cfg.model, cfg.data), train=False, task="caption", cfg=cfg.data)
    grey8 = io.BytesIO()
    Image.fromarray(np.full((36, 36), round(30000 * 255 / 65535), np.uint8)).save(grey8, format="PNG")
    a = decoder({"json": b'{"answers": ["x"]}', "png": _png16(30000), "__key__": "a"}, random.Random(0))["media"]
    b = decoder({"json": b'{"answers": ["x"]}', "png": grey8.getvalue(), "__key__": "b"}, random.Random(0))["media"]
    assert float((a - b).abs().max()) < 1e-6


def test_audio_holding_nan_is_a_bad_sample_named_with_its_key():
    import soundfile as sf

    from scaling.models.transforms import media_spec

    wav = np.zeros(16000, np.float32)
    wav[100:200] = np.nan
    buf = io.BytesIO()
    sf.write(buf, wav, 16000, format="WAV", subtype="FLOAT")
    cfg = load_config(None, ["model.encoder=tiny-ast"])
    decoder = SampleDecoder(media_spec(cfg.model, cfg.data), train=True, task="caption", cfg=cfg.data)
    with pytest.raises(SampleError, match="non-finite") as err:
        decoder({"json": b'{"answers": ["rain"]}', "wav": buf.getvalue(), "__key__": "nan_audio"}, random.Random(0))
    assert err.value.key == "nan_audio"


def test_the_jsonl_converter_skips_answers_that_are_not_strings_with_the_count(tmp_path):
    from scaling.data.annotations import jsonl

    lines = [{"image": "a.jpg", "answers": ["red"]}, {"image": "b.jpg", "answer": None},
             {"image": "c.jpg", "answers": [["red", "blue"]]}, {"image": "d.jpg", "answers": [3]},
             {"image": "e.jpg", "answers": [{"x": 1}]}]
    path = tmp_path / "ann.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in lines))
    ds = jsonl(str(path))
    assert [i.answers for i in ds.items] == [["red"], ["3"]]
    assert len(ds.skipped) == 3 and ds.skipped[0].startswith("line 2: answer null")
    assert all("None" not in a and "[" not in a for i in ds.items for a in i.answers)
