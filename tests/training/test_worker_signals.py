"""Preemption with DataLoader workers: a SIGTERM to the whole process group (what Slurm does to a job step)
reaches the workers too; they must leave it to the trainer, which checkpoints and exits 124."""

import os
import signal
import subprocess
import sys
import time

import pytest

from scaling.training import checkpoint as ckpt
from scaling.training.loop import read_log

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture(scope="module")
def shards_and_backbones(tmp_path_factory):
    from scaling.data.synthetic import write_shards
    from scaling.models.tiny import save_tiny_encoder, save_tiny_llm

    root = tmp_path_factory.mktemp("worker_signals")
    shards = str(root / "shards")
    write_shards(shards, [40, 40], split="train")
    return save_tiny_llm(str(root / "llm"), "llama"), save_tiny_encoder(str(root / "vit"), "vit"), shards


def _children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as fh:
            return [int(p) for p in fh.read().split()]
    except FileNotFoundError:
        return []


@pytest.mark.slow
def test_sigterm_to_the_process_group_with_two_workers_checkpoints(tmp_path, shards_and_backbones):
    llm, vit, shards = shards_and_backbones
    out = str(tmp_path / "run")
    args = [sys.executable, "-m", "scaling", "train", "model.method=depalm", f"model.llm={llm}", f"model.encoder={vit}",
            "model.frozen_dtype=fp32", "model.map.d_embed=32", "model.map.n_queries=4", f"data.train={shards}",
            "data.num_workers=2", f"train.output_dir={out}", "train.max_steps=400", "train.global_batch=8",
            "train.micro_batch=4", "train.precision=fp32", "train.save_every=1000", "train.log_every=1",
            "train.progress_bar=false", "train.tensorboard=false", "train.log_samples=0"]
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore")
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(key, None)
    proc = subprocess.Popen(args, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)  # its own process group, as a Slurm step's processes
    try:
        start = time.time()
        while not (read_log(out) and read_log(out)[-1]["step"] >= 2):
            assert proc.poll() is None, f"exited early ({proc.returncode}): {proc.stderr.read()[-3000:]}"
            assert time.time() - start < 240, "no step 2 within 240 s"
            time.sleep(0.2)
        workers = _children(proc.pid)
        assert len(workers) == 2, f"expected the 2 DataLoader workers as children, got {workers}"
        os.killpg(proc.pid, signal.SIGTERM)  # trainer and both workers, as Slurm signals a step
        proc.wait(timeout=180)
        stderr = proc.stderr.read()
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert "exited unexpectedly" not in stderr, stderr[-3000:]
    assert proc.returncode == 124, stderr[-3000:]
    latest = ckpt.find_latest(out)
    assert latest is not None, "no checkpoint written on the signal"
    step = ckpt.read_json(os.path.join(latest, ckpt.STATE))["step"]
    assert 2 <= step < 400
    assert open(os.path.join(out, "requeue")).read().strip() == str(step)
    # the saved data position covers both workers' cursors
    assert os.path.isfile(os.path.join(latest, "data_rank00000.pt"))
    time.sleep(1)
    assert not [p for p in workers if os.path.exists(f"/proc/{p}") and
                open(f"/proc/{p}/stat").read().split()[2] != "Z"], "DataLoader workers outlived the trainer"


def _slow_worker_init(worker_id: int) -> None:
    """A worker whose start takes a while before the project's init runs: the window a signal can fall in."""
    from scaling.data.workers import worker_init

    time.sleep(1.5)
    worker_init(worker_id)


@pytest.mark.parametrize("held_back", [True, False], ids=["workers-started-with-signals-held", "control"])
def test_a_sigterm_between_a_workers_fork_and_its_init_leaves_it_running(held_back):
    """Slurm signals every process of the step, also a worker forked a moment ago (a new epoch) whose
    worker_init has not run yet. Started inside preemption_signals_blocked (as the stream loader starts its
    workers), the worker keeps the signal pending until it ignores it, and the epoch is read to the end; the
    control (no block) shows the same signal kills the worker and fails the loader, as CI's run did."""
    import contextlib

    from torch.utils.data import DataLoader

    from scaling.data.workers import preemption_signals_blocked

    loader = DataLoader(list(range(8)), batch_size=None, num_workers=2, worker_init_fn=_slow_worker_init,
                        persistent_workers=False)
    with preemption_signals_blocked() if held_back else contextlib.nullcontext():
        it = iter(loader)
    workers = [w.pid for w in it._workers]  # noqa: SLF001 - the test needs the pids
    for pid in workers:  # before their init has run (it sleeps first)
        os.kill(pid, signal.SIGTERM)
    if held_back:
        assert sorted(int(x) for x in it) == list(range(8))
    else:
        with pytest.raises(RuntimeError, match="killed by signal: Terminated|exited unexpectedly"):
            list(it)
    del it
