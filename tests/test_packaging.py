"""Packaging: `kernels/` never shadows the `kernels` distribution; installs are pinned; README commands are CI's."""

import os
import re
import subprocess
import sys

import pytest

tomllib = pytest.importorskip("tomllib", reason="tomllib is in the standard library from Python 3.11")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run(args, cwd, **kw):
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONSAFEPATH", "PYTHONPATH")}
    return subprocess.run(args, cwd=cwd, capture_output=True, text=True, env=env, timeout=300, **kw)


def test_kernels_folder_is_not_a_regular_package():
    assert os.path.isdir(os.path.join(ROOT, "kernels"))
    assert not os.path.exists(os.path.join(ROOT, "kernels", "__init__.py")), (
        "kernels/__init__.py makes the folder a regular top-level package that shadows the `kernels` "
        "distribution transformers imports whenever the repository root is first on sys.path")


def test_transformers_imports_from_the_repository_root():
    """`python -c` puts the repository root first on sys.path: the real `kernels` distribution must still win."""
    code = ("import transformers.models.llama.modeling_llama, importlib.util;"
            "spec = importlib.util.find_spec('kernels');"
            "print(spec.origin if spec else None)")
    res = _run([sys.executable, "-c", code], cwd=ROOT)
    assert res.returncode == 0, res.stderr[-2000:]
    origin = res.stdout.strip().splitlines()[-1]
    assert origin == "None" or not origin.startswith(os.path.join(ROOT, "kernels")), origin


def test_python_m_scaling_check_from_the_repository_root():
    res = _run([sys.executable, "-m", "scaling", "train", "--config", "configs/cpu_tiny.yaml", "--check"], cwd=ROOT)
    assert res.returncode == 0, res.stderr[-3000:]
    assert res.stdout.startswith("config OK") and "{" not in res.stdout, "--check prints JSON only with --json"


@pytest.mark.parametrize("cwd", ["root", "elsewhere"])
def test_scaling_kernels_resolve_to_the_kernels_folder(cwd, tmp_path):
    code = "import scaling.kernels.rms_norm as m, os; print(os.path.realpath(m.__file__))"
    res = _run([sys.executable, "-c", code], cwd=ROOT if cwd == "root" else tmp_path)
    assert res.returncode == 0, res.stderr[-2000:]
    assert res.stdout.strip() == os.path.realpath(os.path.join(ROOT, "kernels", "rms_norm.py"))


def test_checkout_on_pythonpath_resolves_scaling_kernels(tmp_path):
    """A checkout on PYTHONPATH (no install of this tree) finds scaling.kernels through scaling/kernels/__init__.py."""
    code = ("import sys; sys.meta_path[:] = [f for f in sys.meta_path if 'editable' not in getattr(f, '__module__', '')];"
            f"sys.path.insert(0, {ROOT!r}); sys.modules.pop('scaling', None);"
            "import scaling.kernels.dispatch as m, os; print(os.path.realpath(m.__file__))")
    res = _run([sys.executable, "-c", code], cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-2000:]
    assert res.stdout.strip() == os.path.realpath(os.path.join(ROOT, "kernels", "dispatch.py"))


def _pins():
    pins = {}
    for line in open(os.path.join(ROOT, "requirements", "tested.txt")):
        line = line.split("#", 1)[0].strip()
        if line:
            name, _, version = line.partition("==")
            assert version, f"requirements/tested.txt: {line!r} is not an exact pin (name==version)"
            pins[re.sub(r"[-_.]+", "-", name).lower()] = version
    return pins


def test_tested_constraints_pin_every_direct_dependency():
    project = tomllib.load(open(os.path.join(ROOT, "pyproject.toml"), "rb"))["project"]
    reqs = list(project["dependencies"])
    for extra in project["optional-dependencies"].values():
        reqs += [r for r in extra if not r.startswith("scaling[")]
    pins = _pins()
    missing = []
    for req in reqs:
        name = re.sub(r"[-_.]+", "-", re.split(r"[<>=!~;\[ ]", req, maxsplit=1)[0]).lower()
        if name not in pins:
            missing.append(name)
    assert not missing, (f"requirements/tested.txt lacks {missing}: install them in the README's venv, run the "
                         "suite, then `bash requirements/refresh.sh`")


def test_readme_installs_with_the_tested_constraints_and_names_the_versions():
    readme = open(os.path.join(ROOT, "README.md")).read()
    for marker in ("<!-- ci:main -->", "<!-- ci:tests -->"):
        block = readme.split(marker, 1)[1].split("```bash", 1)[1].split("```", 1)[0]
        for install in re.findall(r"pip install[^&]*", block):
            if "--upgrade pip" not in install:
                assert "-c requirements/tested.txt" in install, f"unpinned install in the README: {install!r}"
    pins = _pins()
    for pkg in ("torch", "transformers", "deepspeed", "peft", "accelerate"):
        assert f"{pkg} {pins[pkg]}" in readme, f"the README's 'Tested versions' must name {pkg} {pins[pkg]}"


def test_ci_runs_the_readme_commands():
    readme = open(os.path.join(ROOT, "README.md")).read()
    ci = open(os.path.join(ROOT, ".ci", "run")).read()
    for marker in ("<!-- ci:main -->", "<!-- ci:tests -->"):
        assert marker in readme and marker in ci
        block = readme.split(marker, 1)[1].split("```bash", 1)[1].split("```", 1)[0].strip()
        assert "pip install" in block and "torch==2.14.1" in block and "torchvision==0.29.1" in block
    tests_block = readme.split("<!-- ci:tests -->", 1)[1].split("```", 2)[1]
    assert "pytest" in tests_block


def test_ruff_is_configured_and_clean():
    ruff = subprocess.run([sys.executable, "-m", "ruff", "--version"], capture_output=True)
    if ruff.returncode != 0:
        pytest.skip("ruff is not installed (it comes with the [test] extra)")
    res = _run([sys.executable, "-m", "ruff", "check", "."], cwd=ROOT)
    assert res.returncode == 0, res.stdout[-3000:]


def test_every_package_of_the_tree_is_in_the_wheel():
    """pyproject.toml lists the packages explicitly (for the kernels/ mapping): a new subpackage must be listed,
    else a wheel (non-editable) install lacks it."""
    listed = set(tomllib.load(open(os.path.join(ROOT, "pyproject.toml"), "rb"))["tool"]["setuptools"]["packages"])
    found = {"scaling.kernels"}
    for dirpath, _, files in os.walk(os.path.join(ROOT, "scaling")):
        if "__init__.py" in files:
            found.add(os.path.relpath(dirpath, ROOT).replace(os.sep, "."))
    assert found <= listed, f"add {sorted(found - listed)} to [tool.setuptools] packages in pyproject.toml"


def test_the_editable_install_prints_no_folder_notice(tmp_path):
    """The README's `pip install -e` ends without setuptools' "Please be careful with folders ... same name as your
    package" block (issue 29), which the plain setuptools backend prints for this layout; the wheel is still built."""
    notice = "Please be careful with folders"
    printed = {}
    for backend in ("setuptools.build_meta", "scaling_build"):  # one process each: the hooks keep state
        out = tmp_path / backend
        out.mkdir()
        code = ("import sys, warnings, importlib; warnings.simplefilter('always'); sys.path.insert(0, 'build_backend');"
                f"print(importlib.import_module({backend!r}).build_editable(sys.argv[1]))")
        res = _run([sys.executable, "-c", code, str(out)], cwd=ROOT)
        assert res.returncode == 0, res.stderr[-3000:]
        assert [p.suffix for p in out.iterdir()] == [".whl"], res.stderr[-3000:]
        printed[backend] = res.stdout + res.stderr
    assert notice in printed["setuptools.build_meta"], "setuptools no longer prints the notice: build_backend/ may go"
    assert notice not in printed["scaling_build"], printed["scaling_build"][-3000:]
