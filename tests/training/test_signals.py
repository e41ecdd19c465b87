"""Preemption: SIGTERM/SIGUSR1 → checkpoint at the next step boundary → exit 124 + RUN/requeue → resume."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from scaling.config import ConfigError, load_config
from scaling.data.toy import tiny_run_overrides
from scaling.training import checkpoint as ckpt
from scaling.training.distributed import free_port
from scaling.training.loop import read_log, train

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _env():
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore")
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(key, None)
    return env


def _wait_for_step(out_dir, proc, step, timeout=120):
    start = time.time()
    while time.time() - start < timeout:
        rows = read_log(out_dir)
        if rows and rows[-1]["step"] >= step:
            return
        if proc.poll() is not None:
            raise AssertionError(f"training exited early ({proc.returncode}): {proc.stderr.read()[-3000:]}")
        time.sleep(0.2)
    raise AssertionError(f"no step {step} within {timeout} s")


def _checkpointed_step(out_dir):
    latest = ckpt.find_latest(out_dir)
    assert latest is not None, "no checkpoint written on the signal"
    return ckpt.read_json(os.path.join(latest, ckpt.STATE))["step"]


@pytest.mark.slow
def test_sigterm_checkpoints_exits_124_and_the_rerun_resumes(tmp_path):
    out = str(tmp_path / "run")
    args = [sys.executable, "-m", "scaling", "train", *tiny_run_overrides(out, 500), "train.save_every=1000"]
    proc = subprocess.Popen(args, cwd=REPO, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _wait_for_step(out, proc, 3)
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 124, proc.stderr.read()[-3000:]
    step = _checkpointed_step(out)
    assert 3 <= step < 500
    assert open(os.path.join(out, "requeue")).read().strip() == str(step)
    assert json.load(open(os.path.join(out, "train_summary.json")))["finished"] is False

    # the requeued job: same command (a shorter run here), resumes by itself from latest
    again = subprocess.run([*args[:-1], "train.max_steps=" + str(step + 2), "train.save_every=1000"],
                           cwd=REPO, env=_env(), capture_output=True, text=True, timeout=180)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "resumed from" in again.stderr and f"(step {step})" in again.stderr
    assert not os.path.exists(os.path.join(out, "requeue"))
    assert _checkpointed_step(out) == step + 2
    steps = [r["step"] for r in read_log(out)]
    assert steps[-2:] == [step + 1, step + 2]


@pytest.mark.slow
@pytest.mark.distributed
def test_sigusr1_to_one_rank_stops_both_at_the_same_step(tmp_path):
    out = str(tmp_path / "ddp")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(free_port()),
           "--signals-to-handle", "SIGTERM,SIGINT,SIGHUP,SIGQUIT,SIGUSR1",
           "-m", "scaling", "train", *tiny_run_overrides(out, 500), "train.save_every=1000"]
    proc = subprocess.Popen(cmd, cwd=REPO, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _wait_for_step(out, proc, 2)
        rank1 = json.load(open(os.path.join(out, "ranks", "rank00001.json")))
        os.kill(rank1["pid"], signal.SIGUSR1)  # only rank 1 gets the signal
        proc.wait(timeout=180)
        stderr = proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
    # both ranks checkpoint the same step and exit 124; torchrun reports the first as a failed child
    # (and may SIGTERM the other one after its checkpoint) and exits non-zero itself
    assert proc.returncode != 0
    ranks = [json.load(open(os.path.join(out, "ranks", name))) for name in sorted(os.listdir(os.path.join(out, "ranks")))]
    assert [r["rank"] for r in ranks] == [0, 1] and {r["world_size"] for r in ranks} == {2}
    assert {r["process_group_size"] for r in ranks} == {2} and len({r["pid"] for r in ranks}) == 2
    step = _checkpointed_step(out)
    assert stderr.count(f"checkpointed at step {step} after a preemption signal; exit 124") == 2, stderr[-4000:]
    assert "exitcode: 124" in stderr
    latest = ckpt.find_latest(out)
    assert {f for f in os.listdir(latest) if f.startswith("data_rank")} == {"data_rank00000.pt", "data_rank00001.pt"}
    assert os.path.isfile(os.path.join(out, "requeue"))
    assert step >= 2


def test_a_job_failing_at_start_removes_a_stale_requeue_marker(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "requeue").write_text("12\n")  # left by an earlier job
    cfg = load_config(None, tiny_run_overrides(str(out), 3) + [f"model.llm={tmp_path / 'no-such-llm'}"])
    with pytest.raises(ConfigError, match="does not exist"):
        train(cfg)
    assert not (out / "requeue").exists()  # else launch/*.sbatch would requeue this failing job forever


def test_signal_budget_warns_once_when_step_plus_save_exceed_it():
    from scaling.training.signals import SignalBudget

    budget = SignalBudget(10.0, scheduled=True)
    budget.step(3.0)
    assert budget.saved(5.0) is None  # 8 s <= 10 s
    budget.step(2.0)  # the slowest step counts
    warning = budget.saved(8.0)
    assert warning is not None and "11.0 s" in warning and "train.signal_budget=10 s" in warning
    assert "KillWait" in warning and "--signal=USR1@" in warning
    assert budget.saved(30.0) is None  # once
    local = SignalBudget(1.0, scheduled=False)  # no scheduler sends SIGKILL after a signal: nothing to warn of
    local.step(5.0)
    assert local.saved(5.0) is None and local.needed() == 10.0


def test_the_trainer_measures_its_saves_and_warns_past_the_signal_budget(tmp_path, capfd, monkeypatch):
    from scaling.training.signals import SCHEDULER_JOB_VARIABLES

    for name in SCHEDULER_JOB_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    train(load_config(None, tiny_run_overrides(str(tmp_path / "local"), 4, save_every=2, signal_budget=1e-6)))
    assert "a preemption checkpoint needs" not in capfd.readouterr().err, "a local run has no KillWait to warn of"
    monkeypatch.setenv("SLURM_JOB_ID", "4242")
    out = str(tmp_path / "slow")
    train(load_config(None, tiny_run_overrides(out, 4, save_every=2, signal_budget=1e-6)))
    err = capfd.readouterr().err
    assert err.count("a preemption checkpoint needs up to") == 1, err[-3000:]
    summary = json.load(open(os.path.join(out, "train_summary.json")))
    assert summary["save_seconds_max"] > 0 and summary["step_seconds_max"] > 0
    train(load_config(None, tiny_run_overrides(str(tmp_path / "fast"), 4, save_every=2)))  # 30 s by default
    assert "a preemption checkpoint needs" not in capfd.readouterr().err
    with pytest.raises(ConfigError, match="signal_budget"):
        load_config(None, tiny_run_overrides(str(tmp_path / "bad"), 4, signal_budget=0))
