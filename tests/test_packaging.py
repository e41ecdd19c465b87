"""Packaging: `kernels/` never shadows the `kernels` distribution; README commands are what CI runs."""

import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_kernels_folder_is_scaling_kernels_and_never_top_level(tmp_path):
    code = (
        "import importlib.util, scaling.kernels, os;"
        "print(os.path.realpath(os.path.dirname(scaling.kernels.__file__)));"
        "spec = importlib.util.find_spec('kernels');"
        "print(spec.origin if spec else None);"
        "from transformers.utils.import_utils import is_kernels_available;"
        "print(is_kernels_available())"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, check=True).stdout.split()
    assert out[0] == os.path.realpath(os.path.join(ROOT, "kernels"))
    assert out[1] == "None" or "site-packages" in out[1]  # only a real `kernels` distribution may answer
    assert out[2] == "False" or "site-packages" in out[1]


def test_ci_runs_the_readme_commands():
    readme = open(os.path.join(ROOT, "README.md")).read()
    ci = open(os.path.join(ROOT, ".ci", "run")).read()
    for marker in ("<!-- ci:main -->", "<!-- ci:tests -->"):
        assert marker in readme and marker in ci
        block = readme.split(marker, 1)[1].split("```bash", 1)[1].split("```", 1)[0].strip()
        assert "pip install" in block and "torch==2.14.1" in block and "torchvision==0.29.1" in block
    tests_block = readme.split("<!-- ci:tests -->", 1)[1].split("```", 2)[1]
    assert "pytest" in tests_block
