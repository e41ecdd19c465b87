"""scaling.common.io: a file is written whole or not at all."""

import json
import os

import pytest

from scaling.common.io import AtomicFile, atomic_path, atomic_write, write_json


def test_atomic_write_replaces_the_file_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "a.json"
    path.write_text("old")
    with atomic_write(str(path)) as fh:
        fh.write("new")
        assert path.read_text() == "old"  # readers see the old file until the end
    assert path.read_text() == "new"
    assert os.listdir(tmp_path) == ["a.json"]


@pytest.mark.parametrize("fsync", [False, True])
def test_an_error_keeps_the_old_file_and_removes_the_temporary(tmp_path, fsync):
    path = tmp_path / "a.txt"
    path.write_text("old")
    with pytest.raises(RuntimeError, match="disk"), atomic_write(str(path), fsync=fsync) as fh:
        fh.write("half")
        raise RuntimeError("disk full")
    with pytest.raises(RuntimeError), atomic_path(str(path)) as tmp:
        open(tmp, "w").write("half")
        raise RuntimeError("disk full")
    assert path.read_text() == "old" and os.listdir(tmp_path) == ["a.txt"]


def test_atomic_path_for_writers_that_open_the_file_themselves(tmp_path):
    path = str(tmp_path / "t.bin")
    with atomic_path(path, fsync=True) as tmp:
        assert tmp != path and os.path.dirname(tmp) == os.path.dirname(path)
        with open(tmp, "wb") as fh:
            fh.write(b"\x00\x01")
    assert open(path, "rb").read() == b"\x00\x01" and os.listdir(tmp_path) == ["t.bin"]


def test_atomic_file_kept_open_across_calls(tmp_path):
    path = str(tmp_path / "s.tar")
    out = AtomicFile(path, "wb")
    out.file.write(b"abc")
    assert not os.path.exists(path)
    out.commit()
    assert open(path, "rb").read() == b"abc"
    gone = AtomicFile(str(tmp_path / "x.tar"), "wb")
    gone.file.write(b"abc")
    gone.abort()
    assert os.listdir(tmp_path) == ["s.tar"]


def test_write_json(tmp_path):
    path = str(tmp_path / "m.json")
    write_json(path, {"b": 1, "a": [1.5]}, indent=1, sort_keys=True)
    assert json.load(open(path)) == {"a": [1.5], "b": 1}
    assert open(path).read().startswith('{\n "a"')
