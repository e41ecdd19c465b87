"""configs/cpu_tiny.yaml's documented commands, as a user types them one after the other: each has its own
output folder, and a command pointed at a run folder it cannot resume (another world size or strategy) fails
at once with the fix, before any model is built or DeepSpeed op compiled, and leaves that run's config alone."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys

import pytest
import yaml

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CONFIG = os.path.join(REPO, "configs", "cpu_tiny.yaml")
HANG_TIMEOUT_S = 900  # only catches a hang


def documented_commands() -> list[list[str]]:
    """The `#   <command>` lines of the config's header."""
    cmds = []
    for line in open(CONFIG):
        if not line.startswith("#"):
            break
        text = line[1:].strip()
        if re.match(r"(scaling|torchrun) ", text):
            cmds.append(shlex.split(text))
    return cmds


def _output_dir(cmd: list[str]) -> str:
    outs = [a.split("=", 1)[1] for a in cmd if a.startswith("train.output_dir=")]
    return outs[-1] if outs else yaml.safe_load(open(CONFIG))["train"]["output_dir"]


def test_every_documented_command_has_its_own_output_folder():
    cmds = documented_commands()
    assert len(cmds) >= 3 and any("train.deepspeed=ds_configs/zero2_bf16.json" in c for c in cmds)
    dirs = [_output_dir(c) for c in cmds]
    assert len(set(dirs)) == len(dirs), dirs


def _scaling(args, cwd, **kw):
    return subprocess.run([sys.executable, "-m", "scaling", *args], capture_output=True, text=True, cwd=cwd,
                          timeout=HANG_TIMEOUT_S, **kw)


@pytest.mark.slow
def test_a_run_folder_of_another_world_size_or_strategy_is_refused_before_building_anything(tmp_path):
    run = tmp_path / "runs" / "cpu_tiny"
    first = _scaling(["train", "--config", CONFIG, f"train.output_dir={run}", "train.max_steps=2", "train.save_every=2",
                      "train.eval_every=0", "train.progress_bar=false", "train.tensorboard=false"], tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    assert "training done: 2/2 steps" in first.stdout
    assert "skipped: 0 samples (undecodable media), 0 steps (non-finite gradients)" in first.stdout
    from scaling.training.loop import read_log

    assert read_log(str(run), "eval") == [] and "validation loss" not in first.stdout  # train.eval_every=0: off
    saved_config = (run / "config.yaml").read_text()

    # --check answers for another world size without building anything, and prints the batch geometry
    check = _scaling(["train", "--config", CONFIG, f"train.output_dir={run}", "--check", "--world-size", "2"], tmp_path)
    assert check.returncode == 2
    assert "written by 1 ranks, this job has 2" in check.stderr and "another train.output_dir" in check.stderr
    fresh = _scaling(["train", "--config", CONFIG, f"train.output_dir={tmp_path / 'new'}", "--check", "--world-size", "2",
                      "--json"],
                     tmp_path)
    assert fresh.returncode == 0, fresh.stderr[-2000:]
    plan = json.loads(fresh.stdout)
    assert (plan["micro_batch"], plan["accumulation"], plan["world_size"], plan["global_batch"]) == (16, 1, 2, 32)
    assert "micro batch 16 × accumulation 1 × world 2 = global batch 32" in fresh.stderr

    # the DeepSpeed command pointed at the single-process run folder: refused before the model and the op build
    ds = _scaling(["train", "--config", CONFIG, f"train.output_dir={run}", "train.deepspeed=ds_configs/zero2_bf16.json",
                   ], REPO)
    assert ds.returncode == 2, ds.stderr[-3000:]
    assert "was written by accelerate (ZeRO stage 0), this job runs deepspeed (stage 2)" in ds.stderr
    assert "model:" not in ds.stderr  # logged right after the model is built
    assert (run / "config.yaml").read_text() == saved_config
