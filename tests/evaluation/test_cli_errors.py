"""`scaling eval` / `scaling predict` on what a newcomer has: clear errors, overrides after the files."""

from __future__ import annotations

import pytest

from scaling.cli.main import main
from scaling.cli.predict import split_overrides
from scaling.config import load_config
from scaling.data.toy import tiny_run_overrides
from scaling.training.loop import train


def test_predict_reads_key_value_arguments_after_the_files_as_overrides(tmp_path):
    img = tmp_path / "a=b.png"  # an existing file is a file, even with '=' in its name
    img.write_bytes(b"")
    files, overrides = split_overrides(["x.png", str(img), "eval.max_new_tokens=2", "data.image_size=336", "dir/k.v=1"])
    assert files == ["x.png", str(img), "dir/k.v=1"]
    assert overrides == ["eval.max_new_tokens=2", "data.image_size=336"]


@pytest.fixture(scope="module")
def shape_name_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("shape") / "run"
    train(load_config(None, tiny_run_overrides(str(out), 1)))
    return out


def test_eval_of_a_shape_name_run_names_the_missing_data_and_tokenizer(shape_name_run, capsys, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert main(["eval", "--checkpoint", str(shape_name_run)]) == 2
    err = capsys.readouterr().err
    assert "no data for split 'test'" in err and "--split val" in err
    assert main(["eval", "--checkpoint", str(shape_name_run), "--split", "val"]) == 2
    assert "synthetic CPU task" in capsys.readouterr().err


def test_predict_with_a_shape_name_llm_asks_for_a_real_one(shape_name_run, tmp_path, capsys):
    from PIL import Image

    img = tmp_path / "x.png"
    Image.new("RGB", (32, 32)).save(img)
    assert main(["predict", "--checkpoint", str(shape_name_run), str(img)]) == 2
    err = capsys.readouterr().err
    assert "is a shape name" in err and "--llm DIR" in err
