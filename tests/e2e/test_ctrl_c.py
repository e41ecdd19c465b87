"""Ctrl-C during ``scaling train``, the way a user presses it: the first SIGINT checkpoints at the next step
boundary and exits 130 without a requeue marker (rerunning the same command resumes from that step); a
second SIGINT aborts at once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading

import pytest

from scaling.training.signals import INTERRUPT_EXIT_CODE, StopFlag

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
HANG_TIMEOUT_S = 900  # only catches a hang


def _train_command(out, max_steps):
    return [sys.executable, "-m", "scaling", "train", "--config", os.path.join(REPO, "configs", "cpu_tiny.yaml"),
            f"train.output_dir={out}", f"train.max_steps={max_steps}", "train.save_every=1000", "train.log_every=1",
            "train.progress_bar=false", "train.tensorboard=false", "train.eval_every=0"]


@pytest.mark.slow
def test_first_sigint_checkpoints_at_the_step_boundary_and_resumes(tmp_path):
    out = tmp_path / "run"
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(_train_command(out, 100000), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env, cwd=tmp_path)
    err_lines: list[str] = []
    started = threading.Event()

    def read_stderr():
        for line in proc.stderr:
            err_lines.append(line)
            if line.startswith("step 3/"):
                started.set()

    out_lines: list[str] = []
    readers = [threading.Thread(target=read_stderr, daemon=True),
               threading.Thread(target=lambda: out_lines.extend(proc.stdout), daemon=True)]
    for r in readers:
        r.start()
    try:
        assert started.wait(HANG_TIMEOUT_S), "".join(err_lines)[-3000:]
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=HANG_TIMEOUT_S)
    finally:
        proc.kill()
    for r in readers:
        r.join(timeout=60)
    err, stdout = "".join(err_lines), "".join(out_lines)
    assert proc.returncode == INTERRUPT_EXIT_CODE, err[-3000:]
    assert "Ctrl-C: checkpointing at the end of this step" in err
    steps = sorted(int(n[5:]) for n in os.listdir(out / "checkpoints") if n.startswith("step_"))
    assert steps, err[-3000:]
    stopped = steps[-1]
    assert 3 <= stopped < 100000  # the step it was at, not the last save_every multiple (none before step 1000)
    name = (out / "checkpoints" / "latest").read_text().strip()
    assert name == f"step_{stopped:06d}"
    assert not (out / "requeue").exists(), "Ctrl-C is not a preemption: no requeue marker"
    # the end-of-run block is on stdout and says how to go on
    assert f"training interrupted (Ctrl-C) at step {stopped}/" in stdout
    assert "rerun the same command" in stdout and f"checkpoints/{name}" in stdout
    # rerunning resumes from there
    again = subprocess.run(_train_command(out, stopped + 2), capture_output=True, text=True, env=env, cwd=tmp_path,
                           timeout=HANG_TIMEOUT_S)
    assert again.returncode == 0, again.stderr[-3000:]
    assert f"resumed from {out / 'checkpoints'}" in again.stderr and f"(step {stopped})" in again.stderr
    assert f"training done: {stopped + 2}/{stopped + 2} steps" in again.stdout


def test_second_sigint_aborts_at_once():
    flag = StopFlag().install()
    try:
        os.kill(os.getpid(), signal.SIGINT)  # Python runs the handler before the next bytecode
        assert flag.local and flag.interrupted and flag.interrupts == 1
        assert flag.agreed() and flag.interrupted_agreed
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
    finally:
        flag.uninstall()


def test_preemption_signal_is_not_an_interrupt():
    flag = StopFlag().install()
    try:
        os.kill(os.getpid(), signal.SIGUSR1)
        assert flag.agreed() and not flag.interrupted_agreed and not flag.interrupted
    finally:
        flag.uninstall()
