"""Fault campaign round three, logs (issue 24 items 9-10): a resumed run's log reads as one run (recomputed rows set
aside, TensorBoard purged), and a failing log write (a full disk) is reported once while training goes on."""

import errno
import json
import os

import pytest

from scaling.config import load_config
from scaling.data.toy import tiny_run_overrides
from scaling.training.loop import read_log, train


def run(tmp_path, name, steps, *extra, **kw):
    cfg = load_config(None, tiny_run_overrides(str(tmp_path / name), steps) + list(extra))
    return train(cfg, **kw)


def test_after_a_hard_failure_the_resumed_log_reads_as_one_run(tmp_path, capsys):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    extra = ("data.train=toy://colours?n=64", "train.save_every=2", "train.tensorboard=true")

    def node_failure_at_step_3(step, _info):  # logged step 3, the newest checkpoint is step 2
        if step == 3:
            raise RuntimeError("node lost")

    with pytest.raises(RuntimeError, match="node lost"):
        run(tmp_path, "run", 6, *extra, on_step=node_failure_at_step_3)
    out = str(tmp_path / "run")
    assert [r["step"] for r in read_log(out)] == [1, 2, 3]
    capsys.readouterr()
    resumed = run(tmp_path, "run", 6, *extra)
    assert resumed.exit_code == 0
    assert "1 row(s) of train_log.jsonl past step 2" in capsys.readouterr().err
    assert [r["step"] for r in read_log(out)] == [1, 2, 3, 4, 5, 6]  # step 3 once: the recomputed one
    dropped = [json.loads(line) for line in open(os.path.join(out, "train_log.dropped.jsonl"))]
    assert [r["step"] for r in dropped] == [3]
    acc = EventAccumulator(os.path.join(out, "tensorboard"))
    acc.Reload()
    assert [e.step for e in acc.Scalars("train/loss")] == [1, 2, 3, 4, 5, 6]


def test_a_full_disk_under_tensorboard_is_reported_once_and_training_goes_on(tmp_path, monkeypatch, capsys):
    from torch.utils.tensorboard import SummaryWriter

    real = SummaryWriter.add_scalar

    def add_scalar(self, tag, value, step=None, *a, **kw):
        if step is not None and step >= 3:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(self, tag, value, step, *a, **kw)

    monkeypatch.setattr(SummaryWriter, "add_scalar", add_scalar)
    capsys.readouterr()
    result = run(tmp_path, "run", 6, "train.tensorboard=true", "train.save_every=3")
    err = capsys.readouterr().err
    assert result.exit_code == 0 and result.state.step == 6
    assert err.count("WARNING: writing TensorBoard failed (the disk is full)") == 1, err[-3000:]
    assert "Traceback" not in err
    summary = json.load(open(os.path.join(result.output_dir, "train_summary.json")))
    assert summary["finished"] and summary["steps"] == 6
    assert [r["step"] for r in read_log(result.output_dir)] == [1, 2, 3, 4, 5, 6]  # the JSON log goes on
    assert os.path.isdir(os.path.join(result.output_dir, "checkpoints", "step_000006"))


def test_many_non_finite_steps_in_a_row_stop_the_run_with_a_diagnosis(tmp_path, capsys):
    capsys.readouterr()
    result = run(tmp_path, "run", 12, "train.lr=1e9", "train.max_skipped_in_a_row=3", "train.clip=0")
    err = capsys.readouterr().err
    assert result.exit_code == 3 and result.state.step < 12, err[-2000:]
    assert "the last 3 optimizer steps all had non-finite gradients" in err and "train.lr=1e+09" in err
    summary = json.load(open(os.path.join(result.output_dir, "train_summary.json")))
    assert summary["finished"] is False and "non-finite" in summary["stopped"]
    assert read_log(result.output_dir)[-1]["step"] == result.state.step  # the steps up to the stop are logged


def test_the_cli_exits_3_on_divergence(tmp_path):
    import subprocess
    import sys

    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    done = subprocess.run([sys.executable, "-m", "scaling", "train", "--config", "configs/cpu_tiny.yaml",
                           f"train.output_dir={tmp_path / 'run'}", "train.max_steps=12", "train.epochs=null",
                           "train.lr=1e9", "train.max_skipped_in_a_row=3", "train.clip=0"],
                          cwd=repo, capture_output=True, text=True, timeout=600, env=dict(os.environ, PYTHONPATH=repo))
    assert done.returncode == 3, done.stderr[-3000:]
    assert "Traceback" not in done.stderr
