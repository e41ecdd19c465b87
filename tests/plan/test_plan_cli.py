"""``scaling plan`` / ``scaling train --check`` on the tiny CPU config, and its recommendation trains for real."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from scaling.config import load_config
from scaling.plan import search
from scaling.plan.gpus import GIB, get_gpu
from scaling.plan.launch import overrides
from scaling.plan.planner import make_plan
from scaling.plan.profile import build_profile

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CONFIG = os.path.join(ROOT, "configs", "cpu_tiny.yaml")
QUIET = ["train.eval_every=0", "train.progress_bar=false", "train.tensorboard=false"]


def _scaling(args, cwd):
    env = dict(os.environ, SCALING_NO_PLAN_CACHE="1", PYTHONPATH=ROOT)
    return subprocess.run([sys.executable, "-m", "scaling", *args], capture_output=True, text=True, cwd=cwd,
                          timeout=600, env=env)


def test_plan_and_train_check_print_the_table(tmp_path):
    out = _scaling(["plan", "--config", CONFIG, "--gpu", "v100-16", "--nodes", "1", "--gpus-per-node", "2", "--json"],
                   tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    plan = json.loads(out.stdout)
    rec = plan["recommendation"]
    assert rec["fits"] and rec["setting"]["precision"] == "fp16"  # V100: no bf16
    s = rec["setting"]
    assert s["micro_batch"] * s["accumulation"] * 2 == 32
    assert set(rec["memory"]["gpu"]) >= {"frozen weights", "trainable states", "activations", "loss buffers", "encoder",
                                         "batches", "framework"}
    assert "sbatch" in rec["launch"] and "launch/slurm_train.sbatch" in rec["launch"]["sbatch"]
    check = _scaling(["train", "--config", CONFIG, f"train.output_dir={tmp_path / 'run'}", "--check", "--json", "--world-size", "2",
                      "--gpu", "v100-16"], tmp_path)
    assert check.returncode == 0, check.stderr[-2000:]
    assert "per-GPU memory (GiB)" in check.stderr and "launch:" in check.stderr
    assert json.loads(check.stdout)["memory_plan"]["recommendation"] == rec["label"]


def test_a_config_that_does_not_fit_is_rejected_with_the_part_that_overflowed(tmp_path):
    out = _scaling(["plan", "--config", CONFIG, "--gpu-mem", "0.5", "--peak-tflops", "100", "--gpus-per-node", "1"], tmp_path)
    assert out.returncode == 1, out.stdout[-2000:]
    assert "no setting fits" in out.stdout and "largest parts: frozen weights" not in out.stdout
    assert "does NOT fit" in out.stdout and "framework" in out.stdout


def test_recommendation_for_the_tiny_cpu_config_trains(tmp_path):
    """Squeeze the memory until the config as written (micro-batch 16) no longer fits, then train a few steps with
    the settings the planner recommends instead."""
    cfg = load_config(CONFIG, [])
    p = build_profile(cfg)
    roomy = make_plan(cfg, CONFIG, get_gpu("cpu", memory_gb=64), 1, 1, profile=p)
    written = roomy["as_written"]["memory"]["peak"]
    # between the written setting's peak and the smallest one that keeps the global batch
    _, cands = search.search(p, get_gpu("cpu", memory_gb=64), 1, 1, 32, 0.35, 100.0)
    smallest = min(c.memory["peak"] for c in cands)
    assert smallest < written
    mem_gb = (smallest + written) / 2 / (1 - search.MARGIN) / 1e9
    plan = make_plan(cfg, CONFIG, get_gpu("cpu", memory_gb=mem_gb), 1, 1, profile=p)
    assert not plan["as_written"]["fits"] and "largest parts" in plan["as_written"]["reason"]
    rec = plan["recommendation"]
    assert rec is not None and rec["memory"]["peak"] <= mem_gb * 1e9 * (1 - search.MARGIN)
    s = rec["setting"]
    assert (s["micro_batch"], s["checkpointing"]) != (16, False)
    run = tmp_path / "run"
    from scaling.plan.memory import Setting

    ovr = overrides(Setting(**s))
    out = _scaling(["train", "--config", CONFIG, *ovr, f"train.output_dir={run}", "train.max_steps=3", *QUIET], tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    summary = json.loads((run / "train_summary.json").read_text())
    assert summary["finished"] and summary["steps"] == 3
    assert f"micro batch {s['micro_batch']}" in out.stderr or f"micro_batch={s['micro_batch']}" in " ".join(ovr)
    assert GIB  # (the table's unit)
