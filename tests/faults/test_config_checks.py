"""Fault campaign round three, configs that `--check` accepted and the run then crashed on (issue 24 items 11, 13):
refused at load with what is wrong and the fix."""

import io
import os
import random
import subprocess
import sys

import pytest

from scaling.config import load_config
from scaling.config.base import ConfigError

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.mark.parametrize("override, message", [
    (f"train.seed={2**70}", r"train.seed must be an integer in \[0, 2\*\*32\)"),
    ("train.seed=-1", "train.seed must be"),
    ("model.label_smoothing=2", r"model.label_smoothing must be in \[0, 1\)"),
    ("model.label_smoothing=-0.1", "model.label_smoothing must be"),
    ("train.output_dir=", "train.output_dir is empty"),
    ("train.output_dir=/dev/null", "train.output_dir='/dev/null' is a device or special file, not a directory"),
])
def test_a_config_the_run_would_crash_on_is_refused_at_load(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config(None, [override])


def test_an_output_dir_that_is_a_file_is_refused(tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(ConfigError, match="is a file, not a directory"):
        load_config(None, [f"train.output_dir={tmp_path / 'f'}"])


def test_check_refuses_them_too():
    done = subprocess.run([sys.executable, "-m", "scaling", "train", "--config", "configs/cpu_tiny.yaml",
                           "model.label_smoothing=2", "--check"], cwd=REPO, capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, PYTHONPATH=REPO))
    assert done.returncode != 0 and "model.label_smoothing must be in [0, 1)" in done.stderr, done.stderr[-2000:]
    assert "Traceback" not in done.stderr


def _shard(tmp_path):
    from scaling.data.shards import ShardSetWriter, sample_record
    from scaling.data.synthetic import make_image

    writer = ShardSetWriter(str(tmp_path / "test-%06d.tar"), str(tmp_path), samples_per_shard=5)
    img, color, shape = make_image(random.Random(0), 36)
    buf = io.BytesIO()
    img.save(buf, format="JPEG")
    writer.write("k0", sample_record("0", "caption", "x", "test", ["a"]), {"jpg": buf.getvalue()})
    writer.close()
    return str(tmp_path / "test-000000.tar")


@pytest.mark.parametrize("command", ["eval", "inspect"])
def test_a_checkpoint_argument_naming_a_shard_says_what_the_file_is(tmp_path, command, capsys):
    from scaling.cli.main import main

    shard = _shard(tmp_path)
    args = ["eval", "--checkpoint", shard] if command == "eval" else ["inspect", shard]
    capsys.readouterr()
    assert main(args) != 0
    err = capsys.readouterr().err
    assert "is a tar archive (a webdataset shard of samples?), not a checkpoint" in err and "--data" in err, err
    assert "adapter .safetensors" in err and "Traceback" not in err and "SafetensorError" not in err


def test_other_files_that_are_not_adapters_are_named(tmp_path):
    import torch

    from scaling.training.checkpoint import resolve_adapter_path

    torch.save({"a": torch.zeros(1)}, tmp_path / "model.pt")
    (tmp_path / "index.json").write_text('{"format": "scaling-shards/1", "splits": {}}')
    (tmp_path / "tiny").write_bytes(b"abc")
    for name, what in (("model.pt", "PyTorch"), ("index.json", "index.json"), ("tiny", "too short")):
        with pytest.raises(ConfigError, match=what):
            resolve_adapter_path(str(tmp_path / name))


def test_a_model_larger_than_the_machine_is_refused_before_allocating(tmp_path, monkeypatch):
    from scaling.data.toy import tiny_run_overrides
    from scaling.training import validate

    monkeypatch.setattr(validate, "available_memory", lambda device_type: (200 * 1024**2, "available RAM"))
    big = load_config(None, tiny_run_overrides(str(tmp_path / "run")) + ["model.map.n_queries=1000000"])
    with pytest.raises(ConfigError, match=r"needs about 0\.\d GB to train(.|\n)*more than this machine's 0\.2 GB of "
                                          r"available RAM(.|\n)*model.map.n_queries"):
        validate.plan_run(big, 1, "cpu")
    validate.plan_run(load_config(None, tiny_run_overrides(str(tmp_path / "run"))), 1, "cpu")  # the usual size fits
