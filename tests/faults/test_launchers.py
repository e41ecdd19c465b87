"""Fault campaign round three, launchers (issue 24 items 15-16): no stray error when rank 0 is already gone, and the
environment the launcher sets reaches the trainers on every node of a DeepSpeed (pdsh) launch."""

import json
import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _pass_on_term(run_dir, rank0_pid: int, step_pid: int) -> subprocess.CompletedProcess:
    """``pass_on_to_step TERM`` of launch/lib.sh as an sbatch script runs it (``set -uo pipefail``, job 5), with
    ``RUN/ranks/rank00000.json`` naming ``rank0_pid``."""
    (run_dir / "ranks").mkdir(parents=True)
    (run_dir / "ranks" / "rank00000.json").write_text(json.dumps({"pid": rank0_pid}))
    return subprocess.run(["bash", "-c", f'set -uo pipefail; source launch/lib.sh; pass_on_to_step TERM "{run_dir}" '
                                         f'{step_pid} torchrun'],
                          cwd=REPO, env=dict(os.environ, SLURM_JOB_ID="5"), capture_output=True, text=True, timeout=60)


def test_passing_a_signal_on_when_rank_0_is_already_gone_prints_no_proc_error(tmp_path):
    step = subprocess.Popen(["sleep", "30"])
    try:
        done = _pass_on_term(tmp_path / "run", _dead_pid(), step.pid)
        step.wait(timeout=10)  # the USR1 went to the step instead (sleep dies of it)
    finally:
        if step.poll() is None:
            step.kill()
    assert done.returncode == 0 and done.stderr == "", done.stderr
    assert "passing it to the step as SIGUSR1" in done.stdout


def test_a_live_rank_0_with_a_large_environment_gets_the_signal_under_pipefail(tmp_path):
    """The sbatch scripts run with `set -o pipefail`. A trainer's environment under Slurm is often larger than a
    pipe's first write: a `grep -q` that stops reading at SLURM_JOB_ID made `tr` die of SIGPIPE, the pipeline
    fail, and the signal go to the step instead of rank 0 (seen in the cluster tests)."""
    big = {f"PADDING_{i}": "x" * 200 for i in range(400)}  # ~80 KB after SLURM_JOB_ID
    rank0 = subprocess.Popen(["sleep", "30"], env={"SLURM_JOB_ID": "5", **big})
    step = subprocess.Popen(["sleep", "30"])
    try:
        done = _pass_on_term(tmp_path / "run", rank0.pid, step.pid)
        rank0.wait(timeout=10)  # the USR1 reached rank 0 (sleep dies of it)
    finally:
        for proc in (rank0, step):
            if proc.poll() is None:
                proc.kill()
    assert f"passing it to rank 0 (pid {rank0.pid})" in done.stdout, done.stdout + done.stderr


def test_the_launchers_environment_reaches_every_node_of_a_deepspeed_launch(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "deepspeed").write_text(f'#!/bin/bash\ncat "$DS_ENV_FILE" > "{tmp_path / "exported"}"\n'
                                       f'echo "$OMP_NUM_THREADS" > "{tmp_path / "local_omp"}"\n')
    os.chmod(bin_dir / "deepspeed", 0o755)
    (tmp_path / "hostfile").write_text("node001 slots=2\nnode002 slots=2\n")
    home = tmp_path / "home"
    home.mkdir()
    (home / ".deepspeed_env").write_text("NCCL_DEBUG=INFO\n")
    env = dict(os.environ, PATH=f"{bin_dir}:{os.path.dirname(sys.executable)}:{os.environ['PATH']}",
               HOSTFILE=str(tmp_path / "hostfile"), OMP_THREADS="3", HOME=str(home), HF_HOME="/data/hf cache")
    env.pop("OMP_NUM_THREADS", None)
    done = subprocess.run(["bash", "launch/deepspeed_train.sh", "configs/cpu_tiny.yaml",
                           f"train.output_dir={tmp_path / 'run'}"], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    exported = (tmp_path / "exported").read_text().splitlines()
    assert "OMP_NUM_THREADS=3" in exported and r"HF_HOME=/data/hf\ cache" in exported
    assert exported[-1] == "NCCL_DEBUG=INFO"  # the user's own ~/.deepspeed_env is kept (and wins)
    assert (tmp_path / "local_omp").read_text().strip() == "3"
    # DeepSpeed's runner reads an absolute DS_ENV_FILE in place of ~/.deepspeed_env and ./.deepspeed_env
    probe = ("import os, deepspeed.launcher.runner as r; "
             "print(sorted({os.path.join(p, r.DEEPSPEED_ENVIRONMENT_NAME) for p in r.DEEPSPEED_ENVIRONMENT_PATHS}))")
    out = subprocess.run([sys.executable, "-c", probe], env=dict(os.environ, DS_ENV_FILE=str(tmp_path / "run" / "deepspeed_env")),
                         capture_output=True, text=True, timeout=120)
    assert out.stdout.strip().splitlines()[-1] == repr([str(tmp_path / "run" / "deepspeed_env")]), out.stderr[-1000:]
