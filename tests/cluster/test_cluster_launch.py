"""The launch scripts against real cluster software (tests/cluster/up.sh): Slurm with two slurmd on one host,
DeepSpeed's hostfile launcher over sshd + pdsh, torchrun's c10d rendezvous across the two Slurm nodes.

Every run is the tiny CPU task with 2 ranks (one per node) and is compared with ``torchrun --standalone`` on
the same config; each test asserts the world size, the ranks, and the nodes the ranks really ran on
(``RUN/ranks/rankNNNNN.json``: Slurm's node name, or the SSH connection of the hostfile launcher).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest

from scaling.data.toy import tiny_run_overrides
from scaling.training import checkpoint as ckpt
from scaling.training.loop import read_log

pytestmark = [pytest.mark.cluster, pytest.mark.slow]

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
LAUNCH = os.path.join(REPO, "launch")
# long enough that a signal or a preemption sent at step 3 (a scheduling pass away) arrives mid-run: on a
# quiet machine the tiny run takes ~60 ms a step, and 30 steps ended before Slurm's preemption reached them
STEPS = 120
CONFIG = "configs/cpu_tiny.yaml"
DONE = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "BOOT_FAIL", "DEADLINE"}
HOST = os.uname().nodename


# lines that say why a rank died (a C++ exception, a fatal Python error, a traceback's last line); the job log
# interleaves both nodes, and the cause is often far above the tail that torchrun's shutdown fills
_CAUSE = re.compile(r"terminate called|what\(\)|Fatal Python error|Error:|Exception:|Traceback|SIG[A-Z]+|core dumped"
                    r"|Killed|error:", re.IGNORECASE)


def _why(text: str, tail: int = 3000) -> str:
    """A failed job's log for an assertion message: the lines naming a cause (up to 40), then the tail."""
    causes = [line[:400] for line in text.splitlines() if _CAUSE.search(line)][:40]
    head = "lines naming a cause:\n" + "\n".join(causes) + "\n\n" if causes else ""
    return f"{head}last {tail} characters:\n{text[-tail:]}"


def _clean(env: dict, **extra: str) -> dict:
    """``env`` without the launcher/Slurm variables of the calling environment, the venv first on PATH, + ``extra``."""
    for key in list(env):
        if (key.startswith(("SLURM_", "SBATCH_", "SRUN_")) and key != "SLURM_CONF") or key in (
                "RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT", "RUN_DIR", "PROCS_PER_NODE",
                "OMP_THREADS", "OMP_NUM_THREADS", "HOSTFILE", "DS_CONFIG"):
            env.pop(key)
    env["PATH"] = f"{os.path.dirname(sys.executable)}:{env['PATH']}"
    env["PYTHONWARNINGS"] = "ignore"
    env.update(extra)
    return env


def _overrides(out: str) -> list[str]:
    return tiny_run_overrides(out, STEPS)


def _losses(out: str) -> dict[int, float]:
    return {r["step"]: r["loss"] for r in read_log(out)}


def _ranks(out: str) -> list[dict]:
    folder = os.path.join(out, "ranks")
    return [json.load(open(os.path.join(folder, name))) for name in sorted(os.listdir(folder))]


def _assert_two_nodes(out: str, source: str, ordered: bool = True) -> list[dict]:
    ranks = _ranks(out)
    assert [r["rank"] for r in ranks] == [0, 1], ranks
    assert {r["world_size"] for r in ranks} == {r["process_group_size"] for r in ranks} == {2}
    assert {r["launcher_env"] for r in ranks} == {source}
    assert {r["host"] for r in ranks} == {HOST} and len({r["pid"] for r in ranks}) == 2
    nodes = [r["slurm_node"] for r in ranks]
    if ordered:  # node rank = SLURM_NODEID: rank 0 on the first node
        assert nodes == ["scnode1", "scnode2"], ranks
    else:
        assert sorted(nodes) == ["scnode1", "scnode2"], ranks
    return ranks


def _assert_same_losses(out: str, reference: dict[int, float]) -> None:
    got = _losses(out)
    assert sorted(got) == list(range(1, STEPS + 1)), sorted(got)
    for step in got:
        assert got[step] == pytest.approx(reference[step], rel=1e-6, abs=0), step
    summary = json.load(open(os.path.join(out, "train_summary.json")))
    assert summary["finished"] and summary["world_size"] == 2 and summary["steps"] == STEPS


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> dict[int, float]:
    """Every logged loss of ``torchrun --standalone --nproc_per_node 2`` on the same config."""
    out = str(tmp_path_factory.mktemp("reference") / "run")
    done = subprocess.run(
        ["torchrun", "--standalone", "--nproc_per_node", "2", "-m", "scaling", "train", "--config", CONFIG,
         *_overrides(out)], cwd=REPO, env=_clean(dict(os.environ), OMP_NUM_THREADS="1"), capture_output=True,
        text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    losses = _losses(out)
    assert sorted(losses) == list(range(1, STEPS + 1))
    return losses


def _assert_exactly(out: str, reference: dict[int, float], zero_stage: int) -> None:
    """Every logged loss of ``out`` equal to the reference's, bit for bit, and the run finished with that stage."""
    got = _losses(out)
    assert sorted(got) == list(range(1, STEPS + 1)), sorted(got)
    differ = {step: (got[step], reference[step]) for step in got if got[step] != reference[step]}
    assert not differ, f"{len(differ)} step(s) differ (got, reference): {dict(list(differ.items())[:5])}"
    summary = json.load(open(os.path.join(out, "train_summary.json")))
    assert summary["finished"] and summary["world_size"] == 2 and summary["steps"] == STEPS
    assert summary["strategy"] == "deepspeed" and summary["zero_stage"] == zero_stage, summary


# ---------------------------------------------------------------------------------------------------- Slurm
class Job:
    def __init__(self, cluster, job_id: str, log: str):
        self.cluster, self.id, self.log = cluster, job_id, log
        self.state: str | None = None
        self.restarts = 0

    def info(self) -> dict | None:
        done = subprocess.run(["scontrol", "-o", "show", "job", self.id], env=self.cluster.environ(),
                              capture_output=True, text=True)
        if done.returncode != 0 or "JobState=" not in done.stdout:
            return None  # purged (MinJobAge) after it ended
        return dict(kv.split("=", 1) for kv in done.stdout.split() if "=" in kv)

    def poll(self) -> bool:
        info = self.info()
        if info is None:
            return True
        self.state, self.restarts = info["JobState"], int(info.get("Restarts", 0))
        return self.state in DONE

    def wait(self, timeout: float = 300) -> Job:
        start = time.time()
        while not self.poll():
            if time.time() - start > timeout:
                subprocess.run(["scancel", self.id], env=self.cluster.environ())
                raise AssertionError(f"job {self.id} still {self.state} after {timeout} s:\n{_why(self.text())}")
            time.sleep(0.5)
        return self

    def wait_for_step(self, out: str, step: int, timeout: float = 240) -> None:
        start = time.time()
        while not (_losses(out) and max(_losses(out)) >= step):
            assert not self.poll(), f"job {self.id} ended ({self.state}) before step {step}:\n{_why(self.text())}"
            assert time.time() - start < timeout, f"no step {step} within {timeout} s:\n{_why(self.text())}"
            time.sleep(0.3)

    def text(self) -> str:
        return open(self.log).read() if os.path.exists(self.log) else ""


def _sbatch(cluster, tmp_path, script: str, out: str, *options: str, overrides: list[str] | None = None, **env) -> Job:
    log = str(tmp_path / f"{os.path.basename(script)}.log")
    environ = _clean(cluster.environ(), CONFIG=CONFIG, OVERRIDES=" ".join(overrides or _overrides(out)), **env)
    done = subprocess.run(["sbatch", "--parsable", "--nodes=2", "--gpus-per-node=0", f"--output={log}", *options,
                           os.path.join(LAUNCH, script)], cwd=REPO, env=environ, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return Job(cluster, done.stdout.strip().split(";")[0], log)


ZERO2 = "train.deepspeed=ds_configs/zero2_bf16.json"  # what launch/deepspeed_train.sh uses by default
ZERO3 = "train.deepspeed=ds_configs/zero3_bf16.json"


def _sbatch_reference(cluster, tmp_path_factory, name: str, deepspeed: str) -> dict[int, float]:
    """Every logged loss of an uninterrupted 2-node ``slurm_train.sbatch`` run (torchrun, 1 thread per rank) with
    ``deepspeed`` (a ``train.deepspeed=...`` override)."""
    tmp = tmp_path_factory.mktemp(name)
    out = str(tmp / "run")
    job = _sbatch(cluster, tmp, "slurm_train.sbatch", out, "--cpus-per-task=1",
                  overrides=_overrides(out) + [deepspeed]).wait(timeout=600)
    text = job.text()
    assert job.state in (None, "COMPLETED") and "training exited with code 0" in text, _why(text)
    assert "2 node(s) x 1 process(es), 1 thread(s) each" in text, text[:2000]
    losses = _losses(out)
    assert sorted(losses) == list(range(1, STEPS + 1))
    return losses


@pytest.fixture(scope="module")
def zero2_reference(cluster, tmp_path_factory) -> dict[int, float]:
    return _sbatch_reference(cluster, tmp_path_factory, "zero2_reference", ZERO2)


@pytest.fixture(scope="module")
def zero3_reference(cluster, tmp_path_factory) -> dict[int, float]:
    return _sbatch_reference(cluster, tmp_path_factory, "zero3_reference", ZERO3)


def _checkpointed_step(text: str) -> int:
    marker = "checkpointed at step "
    assert marker in text, _why(text)
    return int(text.split(marker, 1)[1].split()[0].rstrip(";:,"))


@pytest.mark.parametrize("script, options, source", [
    ("slurm_train.sbatch", ["--cpus-per-task=1"], "torch"),
    ("slurm_train_srun.sbatch", ["--ntasks-per-node=1", "--cpus-per-task=1"], "slurm"),
], ids=["torchrun", "srun"])
def test_sbatch_on_two_nodes_matches_torchrun_standalone(cluster, tmp_path, reference, script, options, source):
    out = str(tmp_path / "run")
    job = _sbatch(cluster, tmp_path, script, out, *options).wait()
    text = job.text()
    assert job.state in (None, "COMPLETED"), _why(text)
    assert "training exited with code 0" in text, _why(text)
    if source == "torch":  # GRES-less nodes: one process per node, the task's CPU as its thread (not 8)
        assert "2 node(s) x 1 process(es), 1 thread(s) each" in text, text[:2000]
    _assert_two_nodes(out, source)
    _assert_same_losses(out, reference)


@pytest.mark.parametrize("how", ["steps", "batch-shell"])
def test_usr1_checkpoints_requeues_and_resumes_to_the_same_losses(cluster, tmp_path, reference, how):
    out = str(tmp_path / "run")
    job = _sbatch(cluster, tmp_path, "slurm_train.sbatch", out, "--cpus-per-task=1")
    job.wait_for_step(out, 3)
    # `scancel --signal=USR1` signals the job's steps (torchrun passes it on); `--batch` only the batch shell
    # (as `#SBATCH --signal=B:USR1@T` does), whose trap passes it on to rank 0
    cmd = ["scancel", "--signal=USR1", job.id] if how == "steps" else ["scancel", "--batch", "--signal=USR1", job.id]
    subprocess.run(cmd, env=cluster.environ(), check=True)
    job.wait(timeout=400)
    text = job.text()
    step = _checkpointed_step(text)
    assert 3 <= step < STEPS
    assert f"checkpointed at step {step} after a preemption signal; requeued job {job.id}" in text, _why(text)
    if how == "batch-shell":
        assert "batch shell: SIGUSR1, passing it to rank 0" in text, _why(text)
    assert "(restart 1)" in text and "resumed from" in text and f"(step {step})" in text, _why(text, 4000)
    assert "training exited with code 0" in text
    _assert_two_nodes(out, "torch")  # the requeued job's ranks
    _assert_same_losses(out, reference)


@pytest.mark.parametrize("partition, script, options", [
    ("low", "slurm_train.sbatch", ["--cpus-per-task=1"]),                              # GraceTime 0
    ("lowgrace", "slurm_train_srun.sbatch", ["--ntasks-per-node=1", "--cpus-per-task=1"]),  # GraceTime 60
])
def test_preemption_by_a_higher_priority_partition(cluster, tmp_path, reference, partition, script, options):
    out = str(tmp_path / "run")
    job = _sbatch(cluster, tmp_path, script, out, f"--partition={partition}", *options)
    job.wait_for_step(out, 3)
    # a job of the 'high' partition that needs every CPU of both nodes: Slurm preempts (requeues) the training
    high_log = tmp_path / "high.log"
    done = subprocess.run(["sbatch", "--parsable", "--partition=high", "--nodes=2", "--ntasks-per-node=2",
                           "--cpus-per-task=1", f"--output={high_log}", "--wrap", "srun hostname; sleep 2"],
                          env=_clean(cluster.environ()), capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    high = Job(cluster, done.stdout.strip().split(";")[0], str(high_log))
    job.wait(timeout=400)
    high.wait(timeout=60)
    text = job.text()
    step = _checkpointed_step(text)
    assert 3 <= step < STEPS
    if partition == "low":
        # GraceTime=0: Slurm has requeued the job itself before the batch script could: it must say so
        assert f"Slurm has already requeued job {job.id}" in text and "resubmit the same job" not in text, _why(text)
    else:
        assert f"requeued job {job.id}" in text and "resubmit the same job" not in text, _why(text)
    assert high.text().split().count(HOST) == 4  # the high-priority job really ran, 2 tasks on each node
    assert "(restart 1)" in text and f"(step {step})" in text, _why(text, 4000)
    _assert_two_nodes(out, "torch" if script == "slurm_train.sbatch" else "slurm")
    _assert_same_losses(out, reference)


def test_sigterm_to_every_process_with_two_dataloader_workers_checkpoints_and_requeues(cluster, tmp_path):
    # `scancel --signal=TERM` signals every process of the step: torchrun, the trainers and their DataLoader
    # workers (the shard pipeline, data.num_workers=2), which must leave it to the trainers
    from scaling.data.synthetic import write_shards
    from scaling.models.tiny import save_tiny_encoder, save_tiny_llm

    shards = str(tmp_path / "shards")
    write_shards(shards, [40, 40], split="train")
    llm, vit = save_tiny_llm(str(tmp_path / "llm"), "llama"), save_tiny_encoder(str(tmp_path / "vit"), "vit")
    out = str(tmp_path / "run")
    overrides = ["model.method=depalm", f"model.llm={llm}", f"model.encoder={vit}", "model.frozen_dtype=fp32",
                 "model.map.d_embed=32", "model.map.n_queries=4", f"data.train={shards}", "data.val=null",
                 "data.num_workers=2", f"train.output_dir={out}", f"train.max_steps={STEPS}", "train.global_batch=8",
                 "train.micro_batch=4", "train.precision=fp32", "train.save_every=1000", "train.log_every=1",
                 "train.progress_bar=false", "train.tensorboard=false", "train.log_samples=0"]
    job = _sbatch(cluster, tmp_path, "slurm_train.sbatch", out, "--cpus-per-task=1", overrides=overrides)
    job.wait_for_step(out, 3)
    subprocess.run(["scancel", "--signal=TERM", job.id], env=cluster.environ(), check=True)
    job.wait(timeout=400)
    text = job.text()
    assert "exited unexpectedly" not in text and "killed by signal" not in text, _why(text)
    step = _checkpointed_step(text)
    assert 3 <= step < STEPS
    assert f"requeued job {job.id}" in text and "(restart 1)" in text and f"(step {step})" in text, _why(text)
    assert "training exited with code 0" in text
    _assert_two_nodes(out, "torch")
    assert sorted(_losses(out)) == list(range(1, STEPS + 1))


def test_torchrun_two_nodes_c10d_rendezvous(cluster, tmp_path, reference):
    out = str(tmp_path / "run")
    # one torchrun per Slurm node; the c10d rendezvous on the first node assigns the node ranks
    launcher = ('exec torchrun --nnodes=2 --nproc_per_node=1 --rdzv-backend=c10d --rdzv-endpoint=scnode1:$PORT '
                '--rdzv-id=$SLURM_JOB_ID -m scaling train --config "$CONFIG" "$@"')
    port = str(20000 + os.getpid() % 9000)
    done = subprocess.run(["srun", "--nodes=2", "--ntasks-per-node=1", "--cpus-per-task=1", "--kill-on-bad-exit=1",
                           "bash", "-c", launcher, "_", *_overrides(out)], cwd=REPO,
                          env=_clean(cluster.environ(), CONFIG=CONFIG, PORT=port, OMP_NUM_THREADS="1"),
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    _assert_two_nodes(out, "torch", ordered=False)
    _assert_same_losses(out, reference)


# ---------------------------------------------------------------------------------------------------- SSH
def _ssh_ports(cluster) -> dict[str, str]:
    """{port: node} of the sshd that up.sh started for each node (from its ssh config)."""
    ports, node = {}, None
    for line in open(os.path.join(cluster.dir, "ssh", "config")):
        words = line.split()
        if words[:1] == ["Host"]:
            node = words[1]
        elif words[:1] == ["Port"]:
            ports[words[1]] = node
    return ports


def _trainers_of(config_path: str) -> list[str]:
    """Processes whose command line names this run's config (trainers, launchers) that are still alive."""
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            cmdline = open(f"/proc/{pid}/cmdline", "rb").read().replace(b"\0", b" ").decode(errors="replace")
            state = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if config_path in cmdline and state != "Z":
            found.append(f"{pid} {cmdline}")
    return found


def test_deepspeed_script_on_two_hosts_over_ssh_checkpoints_on_sigterm(cluster, tmp_path, zero2_reference):
    # and its losses are those of the same DeepSpeed config under sbatch/torchrun (issue 24 item 16: the script's
    # OMP_NUM_THREADS must reach the trainers that pdsh starts with a bare environment; one thread here, as the
    # reference's --cpus-per-task=1, where a trainer without it would take both of the machine's cores)
    out = str(tmp_path / "run")
    # the overrides hold shell characters ('?'), which the multi-node script refuses: a YAML config, as it says
    cfg = subprocess.run([sys.executable, "-m", "scaling", "train", "--config", CONFIG, *_overrides(out),
                          "--print-config"], cwd=REPO, env=_clean(dict(os.environ)), capture_output=True, text=True)
    assert cfg.returncode == 0, cfg.stderr
    config = tmp_path / "ds_tiny.yaml"
    config.write_text(cfg.stdout)
    hostfile = tmp_path / "hostfile"
    hostfile.write_text("scnode1 slots=1\nscnode2 slots=1\n")
    env = _clean(cluster.environ(), HOSTFILE=str(hostfile), DS_CONFIG=ZERO2.split("=", 1)[1], OMP_THREADS="1")
    cmd = ["bash", os.path.join(LAUNCH, "deepspeed_train.sh"), str(config)]
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    try:
        start = time.time()
        while not (_losses(out) and max(_losses(out)) >= 3):
            assert proc.poll() is None, f"exited early ({proc.returncode}): {proc.stdout.read()[-3000:]}"
            # the first DeepSpeed start on a machine also JIT-builds its CPU shared-memory extension
            assert time.time() - start < 600, "no step 3 within 600 s"
            time.sleep(0.3)
        proc.send_signal(signal.SIGTERM)  # to the script only, as a scheduler or `kill` would
        text = proc.communicate(timeout=180)[0]
    finally:
        if proc.poll() is None:  # a failure above: stop everything of this run (the assertions below check a
            os.killpg(proc.pid, signal.SIGKILL)  # clean exit leaves nothing behind)
            for line in _trainers_of(str(config)):  # the runner (its own process group), the trainers over ssh
                os.kill(int(line.split()[0]), signal.SIGKILL)
    assert proc.returncode == 124, _why(text, 4000)
    assert "passing it to rank 0" in text, _why(text, 4000)
    latest = ckpt.find_latest(out)
    assert latest is not None, _why(text, 4000)
    step = ckpt.read_json(os.path.join(latest, ckpt.STATE))["step"]
    assert 3 <= step < STEPS and open(os.path.join(out, "requeue")).read().strip() == str(step)
    time.sleep(2)  # sshd sessions close
    assert _trainers_of(str(config)) == [], "processes outlived the launch"

    # the same command again: resumes and finishes, on both hosts
    again = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=400)
    assert again.returncode == 0, (again.stdout + again.stderr)[-4000:]
    assert f"(step {step})" in again.stdout + again.stderr
    ranks = _ranks(out)
    assert [r["rank"] for r in ranks] == [0, 1] and {r["world_size"] for r in ranks} == {2}
    assert {r["strategy"] for r in ranks} == {"deepspeed"} and {r["launcher_env"] for r in ranks} == {"torch"}
    ports = _ssh_ports(cluster)
    # DeepSpeed gives node ranks in hostfile order, each node reached through its own sshd
    assert [ports[r["ssh_connection"].split()[3]] for r in ranks] == ["scnode1", "scnode2"], ranks
    assert _trainers_of(str(config)) == []
    # OMP_NUM_THREADS reached both trainers (without it, torch takes one thread per core of the machine) ...
    assert [(r["omp_num_threads"], r["torch_threads"]) for r in ranks] == [("1", 1), ("1", 1)], ranks
    # ... through the environment file the script hands DeepSpeed
    env_file = open(os.path.join(out, "deepspeed_env")).read().split()
    assert "OMP_NUM_THREADS=1" in env_file, env_file
    _assert_exactly(out, zero2_reference, zero_stage=2)


# ------------------------------------------------------------------------------- fault campaign, round three
# (issue 24): each compares with the module's one reference run


def test_two_requeues_in_a_row_resume_to_the_same_losses(cluster, tmp_path, reference):
    out = str(tmp_path / "run")
    job = _sbatch(cluster, tmp_path, "slurm_train.sbatch", out, "--cpus-per-task=1")
    job.wait_for_step(out, 3)
    subprocess.run(["scancel", "--signal=USR1", job.id], env=cluster.environ(), check=True)
    first = None
    start = time.time()
    while first is None:  # the first requeue checkpointed; wait for the second run to pass that step
        text = job.text()
        if "(restart 1)" in text and "resumed from" in text:
            first = _checkpointed_step(text)
        assert not job.poll() or job.restarts >= 1, _why(text)
        assert time.time() - start < 300, _why(text)
        time.sleep(0.5)
    job.wait_for_step(out, first + 3)
    subprocess.run(["scancel", "--signal=USR1", job.id], env=cluster.environ(), check=True)
    job.wait(timeout=500)
    text = job.text()
    assert "(restart 2)" in text and text.count("after a preemption signal; requeued job") == 2, _why(text, 4000)
    assert "training exited with code 0" in text
    _assert_two_nodes(out, "torch")
    _assert_same_losses(out, reference)


def test_scancel_full_signals_the_batch_shell_and_the_steps_once(cluster, tmp_path, reference):
    out = str(tmp_path / "run")
    job = _sbatch(cluster, tmp_path, "slurm_train.sbatch", out, "--cpus-per-task=1")
    job.wait_for_step(out, 3)
    subprocess.run(["scancel", "--full", "--signal=USR1", job.id], env=cluster.environ(), check=True)
    job.wait(timeout=400)
    text = job.text()
    step = _checkpointed_step(text)
    assert 3 <= step < STEPS and "(restart 1)" in text and f"(step {step})" in text, _why(text, 4000)
    assert "training exited with code 0" in text
    _assert_same_losses(out, reference)


def test_a_signal_during_a_save_checkpoints_and_resumes_to_the_same_losses(cluster, tmp_path, reference):
    out = str(tmp_path / "run")
    # a save at every step: the signal lands in one (or right next to one)
    job = _sbatch(cluster, tmp_path, "slurm_train.sbatch", out, "--cpus-per-task=1",
                  overrides=_overrides(out) + ["train.save_every=1", "train.keep_last=2"])
    job.wait_for_step(out, 3)
    subprocess.run(["scancel", "--signal=USR1", job.id], env=cluster.environ(), check=True)
    job.wait(timeout=500)
    text = job.text()
    step = _checkpointed_step(text)
    assert "(restart 1)" in text and f"(step {step})" in text and "is damaged" not in text, _why(text, 4000)
    assert "training exited with code 0" in text
    _assert_same_losses(out, reference)


def test_a_trainer_killed_then_the_job_resubmitted_resumes_and_the_log_reads_as_one_run(cluster, tmp_path, reference):
    out = str(tmp_path / "run")
    overrides = _overrides(out) + ["train.save_every=10"]
    job = _sbatch(cluster, tmp_path, "slurm_train.sbatch", out, "--cpus-per-task=1", "--no-requeue",
                  overrides=overrides)
    job.wait_for_step(out, 14)  # past the checkpoint of step 10: steps 11.. are computed twice
    rank1 = json.load(open(os.path.join(out, "ranks", "rank00001.json")))["pid"]
    os.kill(rank1, signal.SIGKILL)  # a node's trainer lost
    job.wait(timeout=300)
    assert job.state in (None, "FAILED", "COMPLETED", "CANCELLED"), job.text()[-3000:]
    again = _sbatch(cluster, tmp_path, "slurm_train.sbatch", out, "--cpus-per-task=1", overrides=overrides).wait(400)
    text = again.text()
    assert "training exited with code 0" in text and "resumed from" in text, _why(text, 4000)
    steps = [r["step"] for r in read_log(out)]
    assert steps == list(range(1, STEPS + 1)), steps  # the recomputed steps once (item 9)
    assert os.path.isfile(os.path.join(out, "train_log.dropped.jsonl"))
    _assert_same_losses(out, reference)


def test_zero3_preempted_and_requeued_resumes_to_the_losses_of_its_own_uninterrupted_run(cluster, tmp_path,
                                                                                        zero3_reference):
    out = str(tmp_path / "run")
    job = _sbatch(cluster, tmp_path, "slurm_train.sbatch", out, "--cpus-per-task=1",
                  overrides=_overrides(out) + [ZERO3])
    job.wait_for_step(out, 3)
    subprocess.run(["scancel", "--signal=USR1", job.id], env=cluster.environ(), check=True)
    job.wait(timeout=500)
    text = job.text()
    step = _checkpointed_step(text)
    assert 3 <= step < STEPS
    assert f"checkpointed at step {step} after a preemption signal; requeued job {job.id}" in text, _why(text)
    assert "(restart 1)" in text and "resumed from" in text and f"(step {step})" in text, _why(text, 4000)
    assert "training exited with code 0" in text
    ranks = _assert_two_nodes(out, "torch")
    assert {r["strategy"] for r in ranks} == {"deepspeed"}, ranks
    _assert_exactly(out, zero3_reference, zero_stage=3)
