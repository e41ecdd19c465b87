"""Fault campaign round three, checkpoints (issue 24 items 2-4): whatever is wrong with a checkpoint's files or its
manifest, the checkpoint is damaged, named with the reason, and the resume falls back to the newest intact one."""

import json
import os
import pickle
import shutil

import pytest

from scaling.config import load_config
from scaling.data.toy import tiny_run_overrides
from scaling.training import checkpoint as ckpt
from scaling.training import manifest
from scaling.training.loop import read_log, train

EXTRA = ("data.train=toy://colours?n=64", "train.save_every=2")


def run(tmp_path, name, steps, *extra, **kw):
    cfg = load_config(None, tiny_run_overrides(str(tmp_path / name), steps) + list(extra))
    return train(cfg, **kw)


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A 4-step run with checkpoints at steps 2 and 4 (copied by each test before damaging it)."""
    root = tmp_path_factory.mktemp("saved")
    run(root, "run", 4, *EXTRA)
    return str(root / "run")


def _copy(saved, tmp_path):
    out = str(tmp_path / "run")
    shutil.copytree(saved, out)
    return out, os.path.join(out, "checkpoints", "step_000004")


def _edit_manifest(d, edit):
    path = os.path.join(d, manifest.MANIFEST)
    data = json.load(open(path))
    edit(data)
    with open(path, "w") as fh:
        json.dump(data, fh)


def _rehash(d):
    manifest.write(d)


def _evil_pickle(d, rel):
    class Runs:
        def __reduce__(self):
            return (os.system, ("true",))

    with open(os.path.join(d, rel), "wb") as fh:
        pickle.dump({"position": Runs()}, fh)


MANIFEST_DAMAGE = {
    "a flipped bit in a key": lambda d: _edit_manifest(d, lambda m: m["files"]["optimizer.pt"].update(
        {"sha2u6": m["files"]["optimizer.pt"].pop("sha256")})),
    "a size that is text": lambda d: _edit_manifest(d, lambda m: m["files"]["optimizer.pt"].update(size="12")),
    "no files field": lambda d: _edit_manifest(d, lambda m: m.pop("files")),
    "a list": lambda d: open(os.path.join(d, manifest.MANIFEST), "w").write("[1, 2]"),
    "not UTF-8": lambda d: open(os.path.join(d, manifest.MANIFEST), "wb").write(b"\xff\xfe{"),
    "a name outside": lambda d: _edit_manifest(d, lambda m: m["files"].update({"../x": m["files"]["optimizer.pt"]})),
}

FILE_DAMAGE = {
    "deleted manifest": (lambda d: os.remove(os.path.join(d, manifest.MANIFEST)), "manifest.json is missing"),
    "flipped data-state file, no manifest": (
        lambda d: (os.remove(os.path.join(d, manifest.MANIFEST)), _flip(os.path.join(d, "data_rank00000.pt"))),
        "data_rank00000.pt cannot be loaded"),
    "empty window file": (lambda d: open(os.path.join(d, "window_rank00000.pt"), "w").close(),
                          "window_rank00000.pt"),
    "deleted window file, no manifest": (
        lambda d: (os.remove(os.path.join(d, manifest.MANIFEST)), os.remove(os.path.join(d, "window_rank00000.pt"))),
        "window_rank00000.pt is missing"),
    "pickle in data_rank, manifest rehashed": (lambda d: (_evil_pickle(d, "data_rank00000.pt"), _rehash(d)),
                                              "data_rank00000.pt cannot be loaded"),
    "pickle in optimizer.pt, manifest rehashed": (lambda d: (_evil_pickle(d, "optimizer.pt"), _rehash(d)),
                                                 "optimizer.pt cannot be loaded"),
}


def _flip(path):
    """Flip one byte of the pickle inside a torch.save file (its data.pkl member)."""
    import struct
    import zipfile

    info = next(i for i in zipfile.ZipFile(path).infolist() if i.filename.endswith("/data.pkl"))
    data = bytearray(open(path, "rb").read())
    name_len, extra_len = struct.unpack("<HH", data[info.header_offset + 26:info.header_offset + 30])
    start = info.header_offset + 30 + name_len + extra_len
    data[start + info.compress_size // 2] ^= 0xFF
    open(path, "wb").write(bytes(data))


def test_an_intact_checkpoint_has_no_problems_and_records_its_format(saved):
    d = os.path.join(saved, "checkpoints", "step_000004")
    assert manifest.problems(d) == []
    state = json.load(open(os.path.join(d, ckpt.STATE)))
    assert state["format"] == ckpt.CHECKPOINT_FORMAT and state["window"] is True
    assert "window_rank00000.pt" in json.load(open(os.path.join(d, manifest.MANIFEST)))["files"]


@pytest.mark.parametrize("name", list(MANIFEST_DAMAGE))
def test_a_manifest_that_does_not_parse_or_lacks_fields_marks_its_checkpoint_damaged(saved, tmp_path, name):
    _, d = _copy(saved, tmp_path)
    MANIFEST_DAMAGE[name](d)
    found = manifest.problems(d)
    assert found and found[0].startswith(manifest.MANIFEST), found


@pytest.mark.parametrize("name", list(FILE_DAMAGE))
def test_damage_without_a_checksum_to_catch_it_is_found_by_the_structural_checks(saved, tmp_path, name):
    _, d = _copy(saved, tmp_path)
    damage, expected = FILE_DAMAGE[name]
    damage(d)
    found = manifest.problems(d)
    assert any(expected in p for p in found), found


@pytest.mark.parametrize("name", ["a flipped bit in a key", "deleted manifest", "pickle in data_rank, manifest rehashed",
                                  "empty window file"])
def test_the_resume_falls_back_past_the_damaged_checkpoint_with_the_reason(saved, tmp_path, capsys, name):
    out, d = _copy(saved, tmp_path)
    (MANIFEST_DAMAGE.get(name) or FILE_DAMAGE[name][0])(d)
    capsys.readouterr()
    resumed = run(tmp_path, "run", 6, *EXTRA)
    err = capsys.readouterr().err
    assert resumed.exit_code == 0 and resumed.state.step == 6
    assert "checkpoint step_000004 is damaged" in err and "resuming from step_000002" in err, err[-3000:]
    assert os.path.isdir(d + manifest.DAMAGED_SUFFIX)
    assert "Traceback" not in err
    assert max(r["step"] for r in read_log(out)) == 6


def _optimizer_of_another_model(d):
    """optimizer.pt of an optimizer with one parameter fewer, the manifest rehashed: every file check passes and
    only loading it into this optimizer fails (torch raises ValueError)."""
    import torch

    path = os.path.join(d, "optimizer.pt")
    state = torch.load(path, weights_only=True)
    group = next(g for g in state["param_groups"] if g["params"])
    state["state"].pop(group["params"][-1], None)
    group["params"] = group["params"][:-1]
    torch.save(state, path)
    _rehash(d)


def test_a_checkpoint_that_fails_to_load_is_marked_damaged_and_the_resume_falls_back(saved, tmp_path, capsys):
    out, d = _copy(saved, tmp_path)
    _optimizer_of_another_model(d)
    assert manifest.problems(d) == []  # only the strategy's load finds it
    capsys.readouterr()
    resumed = run(tmp_path, "run", 6, *EXTRA)
    err = capsys.readouterr().err
    assert resumed.exit_code == 0 and resumed.state.step == 6, err[-3000:]
    assert "checkpoint step_000004 is damaged: rank 0: accelerate could not load it (ValueError" in err, err[-3000:]
    assert "step_000002 (step 2)" in err  # the next-newest intact checkpoint is the one resumed
    assert os.path.isdir(d + manifest.DAMAGED_SUFFIX)  # (the resumed run writes a new step_000004)
    assert "could not load it" in open(os.path.join(d + manifest.DAMAGED_SUFFIX, manifest.DAMAGED_REASON)).read()
    assert "Traceback" not in err
    assert sorted(r["step"] for r in read_log(out) if r.get("step", 0) > 2) == [3, 4, 5, 6]


def test_when_no_checkpoint_loads_the_resume_stops_and_names_each_one(saved, tmp_path):
    from scaling.config.base import ConfigError

    out, d = _copy(saved, tmp_path)
    for step in ("step_000002", "step_000004"):
        _optimizer_of_another_model(os.path.join(out, "checkpoints", step))
    with pytest.raises(ConfigError, match="no checkpoint of .* could be loaded") as info:
        run(tmp_path, "run", 6, *EXTRA)
    assert "step_000004 is damaged" in str(info.value) and "step_000002 is damaged" in str(info.value)
    assert not ckpt.list_checkpoints(os.path.join(out, "checkpoints"))  # nothing was resumed afresh over them
