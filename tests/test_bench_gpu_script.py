"""launch/bench_gpu.sh runs on the GPU machine's image as it is, emulated here (DEVICE=cpu, tiny shapes):
from a clean copy of the tree (git's tracked and unignored files: no .venv, no install of scaling), with
deepspeed, webdataset, open_clip, pycocoevalcap, av, soundfile, the `kernels` distribution, Liger-Kernel and
torchao hidden (tests/gpu_image/sitecustomize.py), its extra packages installed from .whl/ by the script's
own `pip install --no-index --no-deps --target` line, every measurement in its own run, the table printed
at the end of each part and the folder packed for the device tool. It also stops with the reason before
spending time when what it needs is missing."""

import json
import os
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
HIDDEN = ("deepspeed", "webdataset", "open_clip", "pycocoevalcap", "av", "soundfile", "kernels", "liger_kernel", "torchao")


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> Path:
    """A clean copy of the repository: the files git would check out (and new, not yet committed source files
    of the package, kernels, launchers and tests), nothing built, installed or left by other runs."""
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("needs a git checkout to list the tree's files")

    def listed(*args):
        out = subprocess.run(["git", "ls-files", "-z", *args], cwd=ROOT, capture_output=True, check=True).stdout
        return [n for n in out.decode().split("\0") if n]

    new = [n for n in listed("-o", "--exclude-standard") if n.startswith(("scaling/", "kernels/", "launch/", "tests/"))]
    dest = tmp_path_factory.mktemp("tree") / "repo"
    for name in listed() + new:
        src = ROOT / name
        if src.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name)
    return dest


def _image_env(tree: Path, **extra) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "TRITON_INTERPRET", "PART", "TAR")}
    env.update({"PYTHONPATH": str(tree / "tests" / "gpu_image"), "PYTHON": sys.executable, "DEVICE": "cpu", **extra})
    return env


def _script(tree: Path, out: Path, timeout: int, **extra) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", "launch/bench_gpu.sh", str(out)], cwd=tree, env=_image_env(tree, **extra),
                          capture_output=True, text=True, timeout=timeout)


def _probe_wheel(folder: Path) -> None:
    """A one-module wheel, standing for those ../shared/tools/device-wheels.sh puts in .whl/."""
    folder.mkdir(parents=True, exist_ok=True)
    info = "scaling_probe-0.1.dist-info"
    with zipfile.ZipFile(folder / "scaling_probe-0.1-py3-none-any.whl", "w") as whl:
        whl.writestr("scaling_probe.py", "READY = True\n")
        whl.writestr(f"{info}/METADATA", "Metadata-Version: 2.1\nName: scaling-probe\nVersion: 0.1\n")
        whl.writestr(f"{info}/WHEEL", "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
        whl.writestr(f"{info}/RECORD", f"scaling_probe.py,,\n{info}/METADATA,,\n{info}/WHEEL,,\n{info}/RECORD,,\n")


def test_the_image_emulation_hides_what_the_image_lacks(tree):
    code = ("import importlib.util, importlib.metadata as md, sys\n"
            f"for m in {HIDDEN!r}:\n"
            "    assert importlib.util.find_spec(m) is None, m\n"
            "    try:\n        __import__(m)\n    except ImportError:\n        pass\n    else:\n        sys.exit(m)\n"
            "for d in ('deepspeed', 'kernels', 'scaling'):\n"
            "    try:\n        md.version(d)\n    except md.PackageNotFoundError:\n        continue\n    sys.exit(d)\n"
            "assert importlib.util.find_spec('scaling') is None  # no install: only the tree's root has it\n"
            "import torch, transformers\n")
    res = subprocess.run([sys.executable, "-c", code], cwd="/", env=_image_env(tree), capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr


@pytest.mark.slow
def test_dry_run_from_a_clean_tree_on_the_image_package_set(tree, tmp_path):
    _probe_wheel(tree / ".whl")
    site, out, tar = tmp_path / "site", tmp_path / "bench", tmp_path / "bench.tgz"
    try:
        res = _script(tree, out, 900, WHEEL_SITE=str(site), TAR=str(tar))
    finally:
        shutil.rmtree(tree / ".whl")
    log = res.stdout + res.stderr
    assert res.returncode == 0, log
    assert "installing 1 wheels from .whl/" in log and (site / "scaling_probe.py").exists()
    assert f"scaling from {tree}" in log  # the copy's own tree, not an installed scaling
    runs = {p.stem: json.loads(p.read_text()) for p in out.glob("*.json")}
    assert set(runs) == {"depalm", "depalm_liger", "generate", "depalm_cached", "limber_all", "depalm_fp8",
                         "depalm_torchao", "generate_graph"}, log
    for name in ("plain", "ours"):
        assert runs["depalm"][name]["step_ms"] > 0 and runs["depalm_cached"][name]["step_ms"] > 0
    assert "not installed" in runs["depalm_liger"]["skipped"]["plain_liger"]
    assert "not installed" in runs["depalm_torchao"]["skipped"]["ours_torchao_fp8"]
    assert runs["depalm_fp8"]["ours_fp8"]["step_ms"] > 0 and runs["limber_all"]["ours"]["step_ms"] > 0
    for row in ("hf", "ours_dynamic", "ours_static"):
        assert runs["generate"][row]["decode_ms_per_step"] > 0, row
    assert "ours_static_graph" in runs["generate_graph"]["skipped"]
    assert (out / "plain_profile.txt").exists() and (out / "ours_profile.txt").exists()
    for logfile in out.glob("*.log"):
        assert "Traceback" not in logfile.read_text(), logfile.name
    # the table closes the output, and the folder comes back as one file
    assert res.stdout.rstrip().splitlines()[-1].startswith("== part all done")
    assert "headline:" in res.stdout and (out / "summary.txt").read_text().startswith("GPU: cpu")
    with tarfile.open(tar) as packed:
        names = packed.getnames()
    assert "bench/summary.txt" in names and "bench/generate.json" in names


def test_runs_that_the_time_budget_cannot_reach_are_named(tree, tmp_path):
    out, tar = tmp_path / "part1", tmp_path / "part1.tgz"
    res = _script(tree, out, 300, PART="1", BUDGET_S="1", TAR=str(tar))
    assert res.returncode == 0, res.stdout + res.stderr
    for name in ("depalm", "depalm_liger", "generate", "depalm_cached", "limber_all"):
        assert (out / f"{name}.notrun").exists(), name
    assert "(not run: the time budget of its part ran out (BUDGET_S=1 s))" in res.stdout
    assert res.stdout.rstrip().splitlines()[-1].startswith("== part 1 done") and tar.exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the stop when no GPU is visible")
def test_it_stops_with_the_reason_when_something_is_missing(tree, tmp_path):
    res = _script(tree, tmp_path / "a", 300, DEVICE="cuda", PART="1")
    assert res.returncode == 1
    assert "STOP" in res.stderr and "no CUDA GPU is visible" in res.stderr
    assert "liger-kernel is missing" in res.stderr and "device-wheels.sh" in res.stderr
    res = _script(tree, tmp_path / "b", 60, PYTHON="/nonexistent/python3")
    assert res.returncode == 1 and "STOP: no '/nonexistent/python3' on PATH" in res.stderr
    res = _script(tree, tmp_path / "c", 60, PART="3")
    assert res.returncode == 1 and "PART must be 1, 2 or all" in res.stderr
