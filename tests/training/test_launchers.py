"""The launch scripts: run directory, overrides, signals passed on once, exit 124 / requeue on the marker.

Each script runs for real (bash, the real config parsing for the run directory); only the launchers it
starts (``srun``, ``scontrol``, ``torchrun``, ``deepspeed``) are stubs on PATH that record their arguments and
the signals they get, and write ``RUN/requeue`` as the trainers do after a preemption checkpoint.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
LAUNCH = os.path.join(REPO, "launch")
SBATCH = [os.path.join(LAUNCH, name) for name in ("slurm_train.sbatch", "slurm_train_srun.sbatch")]


def _env(tmp_path, **extra):
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore")
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT", "SLURM_JOB_ID", "RUN_DIR"):
        env.pop(key, None)
    env["PATH"] = f"{tmp_path / 'bin'}:{os.path.dirname(sys.executable)}:{env.get('PATH', '')}"
    env.update(extra)
    return env


def _stub(tmp_path, name, body):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    path = bin_dir / name
    path.write_text("#!/bin/bash\n" + body + "\n")
    os.chmod(path, 0o755)


def _fake_slurm(tmp_path, srun_body, requeue_ok=True, state="RUNNING", requeue_error="Requested operation is presently disabled"):
    """Stub ``srun`` / ``scontrol`` (``scontrol requeue`` appends the job id to ``requeued``; ``show job`` reports
    ``state``)."""
    _stub(tmp_path, "srun", srun_body)
    _stub(tmp_path, "scontrol",
          f'if [ "$1" = requeue ]; then echo "$2" >> "{tmp_path / "requeued"}"; '
          f'{"exit 0" if requeue_ok else "echo " + repr(requeue_error) + " >&2; exit 1"}; '
          f'elif [ "$1" = show ] && [ "$2" = job ]; then echo "JobId=$3 JobName=x JobState={state} Reason=None"; '
          f'else echo node0; fi')
    return _env(tmp_path, SLURM_JOB_ID="77", SLURM_JOB_NODELIST="node0", SLURM_NNODES="1", SLURM_NODEID="0",
                SLURM_NTASKS="1", SLURM_GPUS_ON_NODE="1", CONFIG="configs/coco_depalm.yaml",
                RUN_DIR=str(tmp_path / "run"))


def _sbatch(script, env):
    return subprocess.run(["bash", script], cwd=REPO, env=env, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("script", SBATCH, ids=os.path.basename)
def test_sbatch_requeues_on_this_jobs_marker_only(tmp_path, script):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    # a stale marker from an earlier job, and trainers that fail at start-up (before they could remove it)
    (run_dir / "requeue").write_text("12\n")
    env = _fake_slurm(tmp_path, "exit 2")
    done = _sbatch(script, env)
    assert done.returncode == 2, done.stdout + done.stderr
    assert not (tmp_path / "requeued").exists() and not (run_dir / "requeue").exists()

    # trainers that checkpoint on a signal write the marker during this job: requeued
    _stub(tmp_path, "srun", f'echo 5 > "{run_dir / "requeue"}"\nexit 1')
    done = _sbatch(script, env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert (tmp_path / "requeued").read_text().split() == ["77"]
    assert "checkpointed at step 5" in done.stdout and "requeued job 77" in done.stdout


@pytest.mark.parametrize("script", SBATCH, ids=os.path.basename)
def test_sbatch_a_failed_requeue_is_an_error_not_a_success(tmp_path, script):
    env = _fake_slurm(tmp_path, f'mkdir -p "{tmp_path / "run"}"; echo 5 > "{tmp_path / "run" / "requeue"}"; exit 1',
                      requeue_ok=False)
    done = _sbatch(script, env)
    assert done.returncode == 124, done.stdout + done.stderr  # not COMPLETED/0: the run is unfinished
    assert "resubmit the same job to resume" in done.stderr


@pytest.mark.parametrize("state, error", [("COMPLETING", "Job is pending execution for job 77"), ("PENDING", "")],
                         ids=["completing", "pending"])
@pytest.mark.parametrize("script", SBATCH, ids=os.path.basename)
def test_sbatch_after_slurm_requeued_the_job_itself_says_so_and_not_resubmit(tmp_path, script, state, error):
    # a preemption with GraceTime=0 (PreemptMode=REQUEUE): Slurm requeues the job before the batch script ends
    # (as Slurm 22.05 answers it: "Job is pending execution" while the job is COMPLETING; or already PENDING)
    env = _fake_slurm(tmp_path, f'mkdir -p "{tmp_path / "run"}"; echo 5 > "{tmp_path / "run" / "requeue"}"; exit 1',
                      requeue_ok=False, state=state, requeue_error=error)
    done = _sbatch(script, env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"Slurm has already requeued job 77 (state {state})" in done.stdout and "Do not resubmit" in done.stdout
    assert "resubmit the same job" not in done.stdout + done.stderr


def test_sbatch_processes_per_node_and_threads_come_from_the_allocation(tmp_path):
    script = SBATCH[0]  # slurm_train.sbatch: one torchrun per node
    env = _fake_slurm(tmp_path, f'echo "$PROCS_PER_NODE $OMP_NUM_THREADS" > "{tmp_path / "layout"}"')
    env.pop("SLURM_GPUS_ON_NODE")
    env.update(SLURM_GPUS_PER_NODE="0", SLURM_CPUS_PER_TASK="8", OMP_NUM_THREADS="3")  # a node without GPUs
    done = _sbatch(script, env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert (tmp_path / "layout").read_text().split() == ["1", "8"]  # one process, the task's 8 CPUs as its threads
    env.update(PROCS_PER_NODE="4")
    assert _sbatch(script, env).returncode == 0
    assert (tmp_path / "layout").read_text().split() == ["4", "2"]  # the 8 CPUs shared by 4 processes
    env.update(SLURM_GPUS_ON_NODE="h100:2", OMP_THREADS="5")
    env.pop("PROCS_PER_NODE")
    assert _sbatch(script, env).returncode == 0
    assert (tmp_path / "layout").read_text().split() == ["2", "5"]  # the node's GPUs; threads set explicitly
    env.update(PROCS_PER_NODE="two")
    done = _sbatch(script, env)
    assert done.returncode == 2 and "PROCS_PER_NODE=two" in done.stderr


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGUSR1, signal.SIGTERM], ids=lambda s: s.name)
@pytest.mark.parametrize("script", SBATCH, ids=os.path.basename)
def test_sbatch_passes_a_signal_for_the_batch_shell_on_as_usr1_once(tmp_path, script, sig):
    # `scancel -b -s USR1` / `--signal=B:USR1@T` signal the batch shell alone: without a trap it dies and nothing is
    # requeued; it must reach the step as SIGUSR1 (a SIGTERM to srun would make srun SIGKILL the step)
    run_dir = tmp_path / "run"
    body = (f'trap \'echo USR1 >> "{tmp_path / "srun.signals"}"; echo 7 > "{run_dir}/requeue"; exit 1\' USR1\n'
            f'trap \'echo TERM >> "{tmp_path / "srun.signals"}"; exit 137\' TERM\n'
            f'mkdir -p "{run_dir}"; touch "{tmp_path / "srun.ready"}"\nwhile true; do sleep 0.1; done')
    env = _fake_slurm(tmp_path, body)
    proc = _start(["bash", script], env)
    try:
        _wait_for(tmp_path / "srun.ready", proc)
        proc.send_signal(sig)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    out = proc.stdout.read()
    assert proc.returncode == 0, out + proc.stderr.read()
    assert (tmp_path / "srun.signals").read_text().split() == ["USR1"]
    assert f"batch shell: SIG{sig.name[3:]}, passing it to the step as SIGUSR1" in out
    assert (tmp_path / "requeued").read_text().split() == ["77"]


@pytest.mark.parametrize("script", SBATCH, ids=os.path.basename)
def test_sbatch_passes_a_run_dir_with_spaces_as_one_argument_and_a_per_job_port(tmp_path, script):
    run_dir = tmp_path / "my runs" / "point 3"
    env = _fake_slurm(tmp_path, f'printf "%s\\n" "$@" > "{tmp_path / "srun_args"}"\nprintf "%s\\n" "$MASTER_PORT" '
                                f'> "{tmp_path / "port"}"')
    env.update(RUN_DIR=str(run_dir), OVERRIDES="train.lr=1e-4 train.output_dir=/elsewhere")
    done = _sbatch(script, env)
    assert done.returncode == 0, done.stdout + done.stderr
    args = (tmp_path / "srun_args").read_text().splitlines()
    assert f"train.output_dir={run_dir}" in args  # one argument, spaces and all
    assert "train.lr=1e-4" in args and "train.output_dir=/elsewhere" not in args  # RUN_DIR wins
    assert (tmp_path / "port").read_text().strip() == str(10000 + 77)  # from SLURM_JOB_ID: jobs do not collide


def _start(cmd, env):
    return subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for(path, proc, timeout=60):
    start = time.time()
    while not os.path.exists(path):
        if proc.poll() is not None:
            raise AssertionError(f"exited early ({proc.returncode}): {proc.stderr.read()[-2000:]}")
        if time.time() - start > timeout:
            raise AssertionError(f"{path} never appeared")
        time.sleep(0.1)


# a stand-in for a launcher's trainers: on SIGTERM/SIGUSR1 it counts the signal, writes the marker as the
# trainers do after their checkpoint, and exits 1 as torchrun / deepspeed do after a signal
TRAINER = ('trap \'echo "$1" >> "{log}"; echo 7 > "{run}/requeue"; exit 1\' TERM USR1\n'
           'touch "{ready}"\nwhile true; do sleep 0.1; done')


def _trainer_body(tmp_path, run_dir, name):
    return TRAINER.replace("{log}", str(tmp_path / f"{name}.signals")).replace("{run}", str(run_dir)) \
                  .replace("{ready}", str(tmp_path / f"{name}.ready")).replace("$1", name)


@pytest.mark.slow
def test_single_node_passes_a_signal_once_and_exits_124(tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    _stub(tmp_path, "torchrun", f'printf "%s\\n" "$@" > "{tmp_path / "args"}"\n' + _trainer_body(tmp_path, run_dir, "torchrun"))
    env = _env(tmp_path, NGPUS="2")
    script = os.path.join(LAUNCH, "single_node.sh")
    proc = _start(["bash", script, "configs/cpu_tiny.yaml", f"train.output_dir={run_dir}"], env)
    try:
        _wait_for(tmp_path / "torchrun.ready", proc)
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 124, proc.stdout.read() + proc.stderr.read()
    assert (tmp_path / "torchrun.signals").read_text().split() == ["torchrun"]  # exactly once
    args = (tmp_path / "args").read_text().splitlines()
    assert "--nproc_per_node=2" in args and f"train.output_dir={run_dir}" in args

    # a run that ends normally: its exit code, no 124
    _stub(tmp_path, "torchrun", "exit 0")
    done = subprocess.run(["bash", script, "configs/cpu_tiny.yaml", f"train.output_dir={run_dir}"], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert not (run_dir / "requeue").exists()  # the marker of the earlier run was cleared at start


def test_deepspeed_script_refuses_a_missing_hostfile_and_shell_patterns_across_nodes(tmp_path):
    _stub(tmp_path, "deepspeed", f'touch "{tmp_path / "started"}"')
    script = os.path.join(LAUNCH, "deepspeed_train.sh")
    env = _env(tmp_path, HOSTFILE=str(tmp_path / "no-hostfile"))
    done = subprocess.run(["bash", script, "configs/cpu_tiny.yaml"], cwd=REPO, env=env, capture_output=True, text=True)
    assert done.returncode == 2 and "no hostfile at" in done.stderr and "hostfile.example" in done.stderr
    hostfile = tmp_path / "hostfile"
    hostfile.write_text("# two nodes\nnode001 slots=8\nnode002 slots=8\n")
    env["HOSTFILE"] = str(hostfile)
    done = subprocess.run(["bash", script, "configs/cpu_tiny.yaml", "data.train=/d/train-{000000..000031}.tar"],
                          cwd=REPO, env=env, capture_output=True, text=True)
    assert done.returncode == 2 and "put it in the YAML config" in done.stderr, done.stderr
    assert not (tmp_path / "started").exists()


@pytest.mark.slow
@pytest.mark.parametrize("nodes", [1, 2])
def test_deepspeed_script_passes_a_signal_to_the_trainers_once_and_exits_124(tmp_path, nodes):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    if nodes == 1:  # one node: the runner has no handler; deepspeed.launcher.launch (its child) passes signals on
        _stub(tmp_path, "launcher", _trainer_body(tmp_path, run_dir, "launch"))
        _stub(tmp_path, "deepspeed", f'"{tmp_path / "bin" / "launcher"}" &\nwait $!\nexit $?')
    else:  # several nodes: the runner itself handles SIGTERM (stops pdsh and the remote launchers)
        _stub(tmp_path, "deepspeed", _trainer_body(tmp_path, run_dir, "launch"))
    hostfile = tmp_path / "hostfile"
    hostfile.write_text("".join(f"node00{i} slots=2\n" for i in range(nodes)))
    env = _env(tmp_path, HOSTFILE=str(hostfile))
    proc = _start(["bash", os.path.join(LAUNCH, "deepspeed_train.sh"), "configs/cpu_tiny.yaml",
                   f"train.output_dir={run_dir}"], env)
    try:
        _wait_for(tmp_path / "launch.ready", proc)
        proc.send_signal(signal.SIGUSR1)  # e.g. a scheduler's warning: passed on as SIGTERM
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 124, proc.stdout.read() + proc.stderr.read()
    assert (tmp_path / "launch.signals").read_text().split() == ["launch"]
