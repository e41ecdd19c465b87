"""Two real processes on CPU (gloo): DDP, DeepSpeed ZeRO-2 and ZeRO-3, launched with torchrun.

Each rank writes RUN/ranks/rankNNNNN.json; the tests read the world size and ranks the processes
really ran with (and, for ZeRO-3, that the frozen backbones were partitioned), that the loss falls on
the colour task, that a NaN batch on one rank skips the step on both, and that a resumed run
reproduces the uninterrupted one.
"""

import json
import os
import shutil
import subprocess
import sys

import pytest
import torch

from scaling.data.toy import tiny_run_overrides
from scaling.training import checkpoint as ckpt
from scaling.training.convert import load_weights
from scaling.training.distributed import free_port
from scaling.training.loop import read_log

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
pytestmark = [pytest.mark.slow, pytest.mark.distributed]


def torchrun(out_dir, steps, *extra, nproc=2, timeout=300):
    env = dict(os.environ, OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false", PYTHONWARNINGS="ignore")
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(key, None)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(nproc), "--master_port", str(free_port()),
           "-m", "scaling", "train", *tiny_run_overrides(str(out_dir), steps), *extra]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, env=env, timeout=timeout)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    return proc


def rank_files(out_dir):
    folder = os.path.join(out_dir, "ranks")
    return [json.load(open(os.path.join(folder, name))) for name in sorted(os.listdir(folder))]


def assert_two_ranks(out_dir, strategy, stage):
    ranks = rank_files(out_dir)
    assert [r["rank"] for r in ranks] == [0, 1]
    assert {r["world_size"] for r in ranks} == {2} and {r["process_group_size"] for r in ranks} == {2}
    assert [r["process_group_rank"] for r in ranks] == [0, 1]
    assert len({r["pid"] for r in ranks}) == 2
    assert {(r["strategy"], r["zero_stage"]) for r in ranks} == {(strategy, stage)}
    return ranks


def by_step(out_dir):
    rows = {}
    for row in read_log(str(out_dir)):
        rows[row["step"]] = row
    return rows


def assert_learns(rows, n=3, margin=0.1):
    steps = sorted(rows)
    first = sum(rows[s]["loss"] for s in steps[:n]) / n
    last = sum(rows[s]["loss"] for s in steps[-n:]) / n
    assert last < first - margin, (first, last)


def assert_adapter_equals_shards(out_dir):
    """The adapter gathered at save time equals DeepSpeed's own reconstruction from the ZeRO partitions."""
    saved, _ = load_weights(str(out_dir))
    shards, _ = load_weights(str(out_dir), from_shards=True)
    assert saved.keys() == shards.keys()
    for name in saved:
        torch.testing.assert_close(saved[name], shards[name], rtol=0, atol=0)


def resume_from(src, dst, step):
    """A copy of run ``src`` as if it had been killed right after the checkpoint of ``step``."""
    shutil.copytree(src, dst)
    root = os.path.join(dst, "checkpoints")
    for s, path in ckpt.list_checkpoints(root):
        if s > step:
            shutil.rmtree(path)
    ckpt.write_text_atomic(os.path.join(root, ckpt.LATEST), ckpt.step_name(step) + "\n")
    for name in ("train_summary.json", "train_log.jsonl"):
        os.remove(os.path.join(dst, name))


def assert_same_run(a, b, steps, rel=1e-5):
    ra, rb = by_step(a), by_step(b)
    for s in steps:
        assert ra[s]["loss"] == pytest.approx(rb[s]["loss"], rel=rel), s
        assert ra[s]["lr"] == pytest.approx(rb[s]["lr"], rel=1e-9), s
    wa, _ = ckpt.read_adapter(str(a))
    wb, _ = ckpt.read_adapter(str(b))
    for name in wa:
        torch.testing.assert_close(wa[name], wb[name], rtol=rel, atol=1e-6)


def test_ddp_two_ranks_on_gloo(tmp_path):
    out = tmp_path / "ddp"
    torchrun(out, 10, "train.lr=5e-3")
    ranks = assert_two_ranks(out, "accelerate", 0)
    assert all(r["launcher_env"] == "torch" and r["accumulation"] == 1 for r in ranks)  # 16 = 8 x 1 x 2
    assert_learns(by_step(out))
    assert json.load(open(out / "train_summary.json"))["world_size"] == 2


def test_two_ranks_agree_to_fall_back_past_a_checkpoint_that_fails_to_load(tmp_path):
    # issue 24 item 4 at resume time: step 4's optimizer.pt is of another model (its manifest rehashed, so only the
    # load finds it): both ranks fail to load it, agree on it (all-reduce, reasons gathered), rank 0 marks it
    # damaged, and both resume step 2, then reproduce the uninterrupted run's steps 3..6
    from scaling.training import manifest

    out = tmp_path / "ddp"
    extra = ("train.save_every=2",)
    torchrun(out, 6, *extra)
    resumed = tmp_path / "resumed"
    resume_from(out, resumed, 4)
    d = os.path.join(resumed, "checkpoints", ckpt.step_name(4))
    state = torch.load(os.path.join(d, "optimizer.pt"), weights_only=True)
    group = next(g for g in state["param_groups"] if g["params"])
    state["state"].pop(group["params"][-1], None)
    group["params"] = group["params"][:-1]
    torch.save(state, os.path.join(d, "optimizer.pt"))
    manifest.write(d)
    proc = torchrun(resumed, 6, *extra)
    err = proc.stdout + proc.stderr
    assert "checkpoint step_000004 is damaged: rank 0: accelerate could not load it" in err, err[-3000:]
    assert "rank 1: accelerate could not load it" in err, err[-3000:]  # every failing rank's reason
    assert "(step 2)" in err and os.path.isdir(d + manifest.DAMAGED_SUFFIX)
    assert sorted(by_step(resumed)) == [3, 4, 5, 6]
    assert_same_run(out, resumed, range(3, 7))


def test_zero2_two_ranks_skips_a_nan_on_one_rank_and_resumes_exactly(tmp_path):
    out = tmp_path / "z2"
    # rank 1's 4th batch holds NaN images: step 4 must be skipped on both ranks (no hang, no NaN weights)
    extra = ("train.deepspeed=ds_configs/zero2_bf16.json", "train.lr=5e-3", "train.save_every=4", "train.keep_last=3",
             "data.train=toy://colours?n=256&nan_batches=3&nan_rank=1")
    torchrun(out, 10, *extra)
    ranks = assert_two_ranks(out, "deepspeed", 2)
    assert all(r["frozen_params_local"] == r["frozen_params_total"] for r in ranks)  # ZeRO-2: backbones replicated
    state = ckpt.read_json(os.path.join(ckpt.find_latest(str(out)), ckpt.STATE))
    assert state["skipped_steps"] == 1 and state["world_size"] == 2 and state["zero_stage"] == 2
    rows = by_step(out)
    assert rows[4]["nonfinite_losses"] == 1 and rows[4].get("grad_norm") is None
    assert_learns({s: r for s, r in rows.items() if s != 4})
    assert_adapter_equals_shards(out)
    # kill after step 4 (the skipped one), resume: steps 5..10 are those of the uninterrupted run
    resumed = tmp_path / "z2_resumed"
    resume_from(out, resumed, 4)
    torchrun(resumed, 10, *extra)
    assert_same_run(out, resumed, range(5, 11))


def test_zero2_two_ranks_with_fp8_llm_weights_and_gradient_checkpointing(tmp_path):
    """model.fp8_llm under DeepSpeed: quantised after deepspeed.initialize (which broadcasts every parameter),
    on each rank, inside the recomputed layers; it learns like the bf16 run and resumes exactly."""
    out = tmp_path / "z2fp8"
    extra = ("train.deepspeed=ds_configs/zero2_bf16.json", "model.fp8_llm=true", "train.gradient_checkpointing=true",
             "train.device=cpu", "train.lr=5e-3", "train.save_every=4")
    torchrun(out, 8, *extra)
    ranks = assert_two_ranks(out, "deepspeed", 2)
    assert all(r["fp8_llm_layers"] == r["fused_llm_layers"] >= 2 for r in ranks), ranks
    assert_learns(by_step(out))
    resumed = tmp_path / "z2fp8_resumed"
    resume_from(out, resumed, 4)
    torchrun(resumed, 8, *extra)
    assert_same_run(out, resumed, range(5, 9))


def test_zero3_refuses_fp8_llm_weights_with_the_fix(tmp_path):
    from scaling.config import ConfigError, load_config
    from scaling.data.toy import tiny_run_overrides
    from scaling.training.validate import plan_run

    cfg = load_config(None, tiny_run_overrides(str(tmp_path / "z3fp8"), 2)
                      + ["train.deepspeed=ds_configs/zero3_bf16.json", "model.fp8_llm=true"])
    with pytest.raises(ConfigError, match="use a ZeRO-2 config or set model.fp8_llm=false"):
        plan_run(cfg, 2, "cpu")


def test_zero3_two_ranks_partitions_the_frozen_llm_with_gradient_checkpointing(tmp_path):
    out = tmp_path / "z3"
    extra = ("train.deepspeed=ds_configs/zero3_bf16.json", "train.gradient_checkpointing=true", "train.lr=5e-3",
             "train.save_every=4", "train.log_samples=2")
    torchrun(out, 8, *extra)
    ranks = assert_two_ranks(out, "deepspeed", 3)
    for r in ranks:  # each rank holds about half of the frozen weights
        assert r["frozen_params_local"] <= r["frozen_params_total"] // 2 + 64, r
    assert_learns(by_step(out))
    assert_adapter_equals_shards(out)
    resumed = tmp_path / "z3_resumed"
    resume_from(out, resumed, 4)
    torchrun(resumed, 8, *extra)
    assert_same_run(out, resumed, range(5, 9))


@pytest.mark.skipif(shutil.which("c++") is None and shutil.which("g++") is None,
                    reason="DeepSpeedCPUAdam (optimizer offload) compiles a C++ extension: no compiler here")
def test_zero3_with_cpu_offload_runs(tmp_path):
    out = tmp_path / "z3off"
    torchrun(out, 4, "train.deepspeed=ds_configs/zero3_offload.json", "train.lr=5e-3", "train.save_every=2")
    assert_two_ranks(out, "deepspeed", 3)
    assert ckpt.find_latest(str(out)).endswith("step_000004")


def test_zero2_bf16_keeps_the_rotary_frequencies_fp32(tmp_path):
    """DeepSpeed before 0.19.2 cast the whole module to bf16/fp16, buffers included: LLaMA's rotary
    ``inv_freq`` lost its precision and positions degraded (pyproject's floor is that release)."""
    out = tmp_path / "z2bf16"
    torchrun(out, 2, "train.deepspeed=ds_configs/zero2_bf16.json", "train.precision=bf16", "train.device=cpu")
    ranks = assert_two_ranks(out, "deepspeed", 2)
    assert all(r["inv_freq_dtypes"] == ["torch.float32"] for r in ranks), [r["inv_freq_dtypes"] for r in ranks]
    assert all(row["loss"] == row["loss"] for row in by_step(out).values())  # the bf16 steps ran (finite)
