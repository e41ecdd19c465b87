"""README's sweep → report sequence on the one config that runs without data (configs/cpu_tiny.yaml, shortened
to a few steps): the report tabulates the toy runs by their validation loss, labelled as such, ranks the
lower loss first, and writes its files beside its input (not into the current folder)."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys

import pytest
import yaml

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
HANG_TIMEOUT_S = 1800  # only catches a hang


def _scaling(args, cwd):
    return subprocess.run([sys.executable, "-m", "scaling", *args], capture_output=True, text=True, cwd=cwd,
                          timeout=HANG_TIMEOUT_S)


@pytest.mark.slow
def test_sweep_run_then_report_on_cpu_tiny(tmp_path):
    cfg = yaml.safe_load(open(os.path.join(REPO, "configs", "cpu_tiny.yaml")))
    cfg["train"].update(max_steps=6, eval_every=3, save_every=6, log_samples=0, tensorboard=False, progress_bar=False)
    cfg["data"]["train"] = "toy://colours?n=256"
    (tmp_path / "cpu_tiny.yaml").write_text(yaml.safe_dump(cfg))
    sweep = _scaling(["sweep", "--config", "cpu_tiny.yaml", "--grid", "train.lr=3e-3,1e-3", "--seeds", "0-1", "--out", "S",
                      "--run"], tmp_path)
    assert sweep.returncode == 0, sweep.stderr[-3000:]
    # results on stdout: the sweep's summary block with the next command; the trainings' output on stderr
    assert "sweep done: 4 points in S · 4 trained, 0 skipped (finished before), 0 failed" in sweep.stdout
    assert "scaling report S" in sweep.stdout and "training done" not in sweep.stdout
    assert sweep.stderr.count("training done: 6/6 steps") == 4

    report = _scaling(["report", "S", "--json"], tmp_path)
    assert report.returncode == 0, report.stderr[-3000:]
    data = json.loads(report.stdout.strip().splitlines()[-1])
    assert data["n_runs"] == 4
    (bench,) = data["benchmarks"]
    assert bench["metric"] == "val_loss" and bench["dataset"] == "toy-colours"
    assert "tabulating its validation loss (lower is better)" in report.stderr
    # written beside the input, not into the current folder
    assert data["outputs"]["markdown"] == str(tmp_path / "S" / "report" / "report.md")
    assert not (tmp_path / "report").exists()
    md = (tmp_path / "S" / "report" / "report.md").read_text()
    assert "toy-colours validation loss (training's) ↓" in md
    # the best grid point is the one with the lowest mean validation loss
    rows = list(csv.DictReader(open(tmp_path / "S" / "report" / "report.csv")))
    assert len(rows) == 2
    best = [r for r in rows if r["best"] == "True"]
    assert len(best) == 1 and float(best[0]["mean"]) == min(float(r["mean"]) for r in rows)
    for r in rows:  # each point's mean is the mean of its runs' own validation losses
        losses = [json.load(open(tmp_path / d / "train_summary.json"))["val_loss"] for d in r["run_dirs"].split()]
        assert float(r["mean"]) == pytest.approx(sum(losses) / 2)
