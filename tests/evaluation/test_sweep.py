"""`scaling sweep`: grid × seeds expansion, configs written, points.json, resumable --run, SLURM array."""

from __future__ import annotations

import json
import sys
import textwrap

import pytest
import yaml

from scaling.cli.main import main
from scaling.config.base import ConfigError
from scaling.evaluation.sweep import load_points, parse_seeds, slurm_script, split_values

BASE = {"model": {"method": "depalm"}, "data": {"name": "coco", "train": "shards/coco/train-{000..003}.tar"}, "train": {"lr": 1e-3}}


@pytest.fixture
def base_cfg(tmp_path):
    path = tmp_path / "base.yaml"
    path.write_text(yaml.safe_dump(BASE))
    return str(path)


def test_parse_seeds():
    assert parse_seeds("0-4") == [0, 1, 2, 3, 4]
    assert parse_seeds("0,1,2") == [0, 1, 2]
    assert parse_seeds("0-2,7") == [0, 1, 2, 7]
    for bad in ("a", "4-0", "0,0", "1-"):
        with pytest.raises(ConfigError):
            parse_seeds(bad)


def test_split_values_keeps_lists_together():
    assert split_values("1e-3,8e-4") == ["1e-3", "8e-4"]
    assert split_values("[q_proj,v_proj],[k_proj]") == ["[q_proj,v_proj]", "[k_proj]"]


def test_sweep_expands_grid_times_seeds(base_cfg, tmp_path, capsys):
    out = tmp_path / "sweep"
    args = ["sweep", "--config", base_cfg, "--grid", "train.lr=1e-3,8e-4,4e-4", "--grid", "train.clip=0.8,1.0",
            "--seeds", "0-4", "--out", str(out)]  # fmt: skip
    assert main(args) == 0
    points = load_points(str(out))
    assert len(points) == 3 * 2 * 5
    assert len({p.name for p in points}) == 30
    index = json.loads((out / "points.json").read_text())
    assert index["seeds"] == [0, 1, 2, 3, 4] and index["grid"]["train.lr"] == ["1e-3", "8e-4", "4e-4"]
    combos = {(p.values["train.lr"], p.values["train.clip"], p.seed) for p in points}
    assert len(combos) == 30
    for p in points:
        cfg = yaml.safe_load(open(p.config))
        assert cfg["train"]["seed"] == p.seed
        assert cfg["train"]["lr"] == p.values["train.lr"] and isinstance(cfg["train"]["lr"], float)  # '8e-4' -> 0.0008
        assert cfg["train"]["clip"] == p.values["train.clip"]
        assert cfg["train"]["output_dir"] == p.run_dir and p.config.startswith(p.run_dir)
        assert cfg["model"]["method"] == "depalm" and cfg["data"]["name"] == "coco"  # merged with the base
    assert {p.values["train.lr"] for p in points} == {1e-3, 8e-4, 4e-4}
    assert "30 points" in capsys.readouterr().out


def test_sweep_rejects_bad_keys_before_writing(base_cfg, tmp_path, capsys):
    out = tmp_path / "sweep"
    assert main(["sweep", "--config", base_cfg, "--grid", "train.clipp=0.8", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "train.clipp" in err and "did you mean 'clip'" in err
    assert not (out / "points.json").exists()
    assert main(["sweep", "--config", base_cfg, "--grid", "train.seed=1,2", "--out", str(out)]) == 2
    assert "--seeds" in capsys.readouterr().err


def test_sweep_run_trains_in_sequence_and_resumes(base_cfg, tmp_path, capsys):
    fake = tmp_path / "fake_train.py"  # stands in for `scaling train`: writes its summary (+ metrics.json)
    fake.write_text(textwrap.dedent("""
        import json, os, sys, yaml
        cfg = yaml.safe_load(open(sys.argv[sys.argv.index("--config") + 1]))
        out = cfg["train"]["output_dir"]
        with open(os.path.join(out, "calls.txt"), "a") as fh:
            fh.write("x")
        json.dump({"finished": True}, open(os.path.join(out, "train_summary.json"), "w"))
        if cfg["train"]["seed"] == 0:  # seed 1 stands for a toy:// run: no metrics.json, finished all the same
            json.dump({"task": "caption", "metrics": {"CIDEr": cfg["train"]["lr"]}}, open(os.path.join(out, "metrics.json"), "w"))
    """))
    out = tmp_path / "sweep"
    args = ["sweep", "--config", base_cfg, "--grid", "train.lr=1e-3,8e-4", "--seeds", "0,1", "--out", str(out),
            "--run", "--train-command", f"{sys.executable} {fake}"]  # fmt: skip
    assert main(args) == 0
    points = load_points(str(out))
    assert all(p.finished for p in points) and len(points) == 4
    assert main(args) == 0  # resume: everything finished, nothing trained again
    assert all((tmp_path / "sweep" / p.name / "calls.txt").read_text() == "x" for p in points)
    assert "4 skipped" in capsys.readouterr().out


def test_sweep_run_reports_failures(base_cfg, tmp_path):
    args = ["sweep", "--config", base_cfg, "--seeds", "0", "--out", str(tmp_path / "s"), "--run",
            "--train-command", f"{sys.executable} -c 'import sys; sys.exit(3)'"]  # fmt: skip
    assert main(args) == 1


def test_slurm_array_self_contained(base_cfg, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no launch/slurm_train.sbatch here
    out = tmp_path / "sweep"
    args = ["sweep", "--config", base_cfg, "--grid", "train.lr=1e-3,8e-4", "--seeds", "0-2", "--out", str(out), "--slurm"]
    import scaling.evaluation.sweep as S

    monkeypatch.setattr(S, "find_train_sbatch", lambda explicit=None: None)
    assert main(args) == 0
    text = (out / "sweep.sbatch").read_text()
    points = load_points(str(out))
    assert text.startswith("#!/bin/bash") and "#SBATCH --array=0-5\n" in text
    assert all(p.config in text for p in points)
    assert 'CONFIG="${CONFIGS[$SLURM_ARRAY_TASK_ID]}"' in text
    assert 'srun $LAUNCHER train --config "$CONFIG"' in text
    assert '"finished": true\' "$RUN_DIR/train_summary.json"' in text  # finished points are skipped
    assert text.count(">>> SET") >= 4
    # the points are listed in index order so task i runs point i
    assert [text.index(p.config) for p in points] == sorted(text.index(p.config) for p in points)


def test_slurm_array_with_training_sbatch(base_cfg, tmp_path):
    out = tmp_path / "sweep"
    train_sbatch = tmp_path / "slurm_train.sbatch"
    train_sbatch.write_text("#!/bin/bash\n#SBATCH --gpus=8\nsrun python -m scaling train --config \"$CONFIG\"\n")
    args = ["sweep", "--config", base_cfg, "--seeds", "0-3", "--out", str(out), "--slurm", "--train-sbatch", str(train_sbatch)]
    assert main(args) == 0
    text = (out / "sweep.sbatch").read_text()
    assert "#SBATCH --array=0-3\n" in text
    assert f"TRAIN_SBATCH={train_sbatch}" in text
    assert 'sbatch --wait --export=ALL,CONFIG="$CONFIG"' in text and "srun $LAUNCHER" not in text


def test_slurm_script_needs_points(tmp_path):
    with pytest.raises(ConfigError):
        slurm_script([], str(tmp_path))
