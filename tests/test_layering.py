"""The layering of docs/architecture.md, checked: no import (lazy ones inside functions included) runs upward.

High → low; a package imports only from packages on a lower line, never from one on its own line:

    scaling.cli
    scaling.demo, scaling.serve
    scaling.evaluation, scaling.bench, scaling.plan
    scaling.training
    scaling.data | scaling.models
    scaling.config
    scaling.common
    scaling.kernels (imported by scaling.models and scaling.bench only; imports no other scaling package)

The scan reads every module of scaling/ and of kernels/ (the sources of scaling.kernels) with ``ast``: ``import``
and ``from ... import`` statements anywhere in a module (relative ones resolved) and ``importlib.import_module`` /
``__import__`` calls whose module name is a string constant or an f-string that starts with ``scaling.``.
"""

from __future__ import annotations

import ast
import os

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# high → low; packages on one line are siblings and never import each other
LAYERS: list[tuple[str, ...]] = [
    ("cli",),
    ("demo", "serve"),
    ("evaluation", "bench", "plan"),
    ("training",),
    ("data", "models"),
    ("config",),
    ("common",),
]
KERNELS = "kernels"  # apart: Triton kernels, imported by these packages only, importing no other scaling package
KERNEL_USERS = ("models", "bench")
LEVEL = {pkg: i for i, line in enumerate(LAYERS) for pkg in line}
KNOWN = set(LEVEL) | {KERNELS}

# Imports against the layering that are being removed right now, each with its owner: an entry lets one import
# through while its owner moves it. Entries are deleted as the imports go; a listed import that no longer exists
# fails the test (the list only shrinks). Key: (importing module's path relative to the repository, imported
# module); value: who removes it. Empty since `enc` removed the data <-> models imports (issue 23 step 2).
TEMPORARY: dict[tuple[str, str], str] = {}


def _modules() -> list[tuple[str, str]]:
    """(path relative to the repository, dotted module name) of every module of scaling/ and kernels/."""
    out = []
    for top, dotted in (("scaling", "scaling"), ("kernels", "scaling.kernels")):
        base = os.path.join(ROOT, top)
        for folder, dirs, files in os.walk(base):
            dirs[:] = sorted(d for d in dirs if not d.startswith((".", "__pycache__")))
            for name in sorted(files):
                if not name.endswith(".py"):
                    continue
                rel = os.path.relpath(os.path.join(folder, name), base)[:-3].split(os.sep)
                if rel[-1] == "__init__":
                    rel = rel[:-1]
                out.append((os.path.relpath(os.path.join(folder, name), ROOT), ".".join([dotted, *rel])))
    return out


def _imported(tree: ast.AST, module: str, is_package: bool) -> list[tuple[int, str]]:
    """(line, imported dotted name) for every import in ``tree``; ``module``: the importing module's name."""
    package = module if is_package else module.rpartition(".")[0]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolved against the importing module's package
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - (node.level - 1)])
                target = f"{base}.{node.module}" if node.module else base
            else:
                target = node.module or ""
            if node.module is None or target in ("scaling",):
                found += [(node.lineno, f"{target}.{alias.name}") for alias in node.names]
            else:
                found.append((node.lineno, target))
        elif isinstance(node, ast.Call) and node.args:
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else None
            if name not in ("import_module", "__import__"):
                continue
            arg = node.args[0]
            if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                found.append((node.lineno, arg.value))
            elif isinstance(arg, ast.JoinedStr) and arg.values and isinstance(arg.values[0], ast.Constant):
                prefix = str(arg.values[0].value)
                if prefix.startswith("scaling.") and prefix.count(".") >= 2:  # scaling.<package>. is known
                    found.append((node.lineno, prefix.rstrip(".")))
    return [(line, name) for line, name in found if name == "scaling" or name.startswith("scaling.")]


def _package(dotted: str) -> str | None:
    """``scaling.<package>...`` → ``<package>``; None for ``scaling`` itself."""
    parts = dotted.split(".")
    return parts[1] if len(parts) > 1 else None


def _problem(source: str | None, target: str | None) -> str | None:
    """Why ``scaling.<source>`` may not import ``scaling.<target>`` (None: allowed)."""
    if target is None or target == source:
        return None
    if source is None:
        return None  # scaling/__init__.py and scaling/__main__.py are checked by their own test
    if target not in KNOWN:
        return f"scaling.{target} is not in the layering"
    if target == KERNELS:
        return None if source in KERNEL_USERS else f"only {', '.join('scaling.' + p for p in KERNEL_USERS)} import scaling.kernels"
    if source == KERNELS:
        return "scaling.kernels imports no other scaling package"
    if LEVEL[target] == LEVEL[source]:
        return f"scaling.{source} and scaling.{target} are siblings on one line of the layering: neither imports the other"
    if LEVEL[target] < LEVEL[source]:
        return f"scaling.{target} is above scaling.{source} in the layering"
    return None


def _violations() -> tuple[list[str], set[tuple[str, str]]]:
    problems, temporary_seen = [], set()
    for path, module in _modules():
        with open(os.path.join(ROOT, path), encoding="utf-8") as fh:
            tree = ast.parse(fh.read(), filename=path)
        # scaling/__init__.py and scaling/__main__.py belong to no package (test_the_top_level_modules_...)
        source = _package(module) if os.sep in os.path.relpath(path, "scaling") or path.startswith("kernels") else None
        for line, name in _imported(tree, module, path.endswith("__init__.py")):
            why = _problem(source, _package(name))
            if why is None:
                continue
            if (path, name) in TEMPORARY:
                temporary_seen.add((path, name))
                continue
            problems.append(f"{path}:{line} imports {name}: {why}")
    return problems, temporary_seen


def test_no_import_runs_against_the_layering():
    problems, _ = _violations()
    assert not problems, (
        "imports against the layering (docs/architecture.md; high → low: "
        + " > ".join(" | ".join(line) for line in LAYERS)
        + "; kernels used by models and bench only). Move the shared piece down (scaling.common holds what "
        "several packages need), or pass it in from the higher package:\n  " + "\n  ".join(problems)
    )


def test_the_temporary_exceptions_still_exist():
    _, seen = _violations()
    gone = sorted(set(TEMPORARY) - seen)
    assert not gone, f"these imports are gone: delete their entries from TEMPORARY in {__file__}: {gone}"


def test_every_package_is_in_the_layering():
    base = os.path.join(ROOT, "scaling")
    unknown = []
    for name in sorted(os.listdir(base)):
        full = os.path.join(base, name)
        if os.path.isdir(full) and os.path.isfile(os.path.join(full, "__init__.py")) and name not in KNOWN:
            unknown.append(f"scaling.{name} (a package)")
        elif name.endswith(".py") and name not in ("__init__.py", "__main__.py"):
            unknown.append(f"scaling.{name[:-3]} (a module directly under scaling/)")
    assert not unknown, (
        f"{', '.join(unknown)}: not in the layering. Add it to LAYERS in {os.path.relpath(__file__, ROOT)} on the line "
        "of the packages it may import from those below (and to the picture in docs/architecture.md), or move the "
        "code into an existing package"
    )


def test_the_top_level_modules_import_only_the_cli():
    for rel, allowed in (("scaling/__init__.py", set()), ("scaling/__main__.py", {"cli"})):
        with open(os.path.join(ROOT, rel), encoding="utf-8") as fh:
            tree = ast.parse(fh.read(), filename=rel)
        module = "scaling" if rel.endswith("__init__.py") else "scaling.__main__"
        used = {_package(n) for _, n in _imported(tree, module, rel.endswith("__init__.py"))} - {None}
        assert used <= allowed, f"{rel} imports scaling.{sorted(used - allowed)}: it may import {sorted(allowed) or 'nothing'}"


@pytest.mark.parametrize(("source", "target", "allowed"), [
    ("training", "data", True), ("data", "models", False), ("models", "data", False), ("data", "training", False),
    ("config", "models", False), ("cli", "common", True), ("common", "config", False), ("bench", "kernels", True),
    ("training", "kernels", False), ("kernels", "common", False), ("evaluation", "bench", False),
    ("serve", "evaluation", True), ("plan", "training", True), ("demo", "cli", False), ("models", "newpkg", False),
])
def test_the_rule_itself(source, target, allowed):
    assert (_problem(source, target) is None) is allowed


def test_the_scan_sees_lazy_relative_and_dynamic_imports(tmp_path):
    code = (
        "import os\n"
        "from . import sibling\n"
        "from ..training import loop\n"
        "def later():\n"
        "    from scaling.models.builder import build_model\n"
        "    import importlib\n"
        "    importlib.import_module('scaling.cli.main')\n"
        "    importlib.import_module(f'scaling.kernels.{name}')\n"
        "from scaling import config\n"
    )
    names = sorted(n for _, n in _imported(ast.parse(code), "scaling.data.stream", False))
    assert names == ["scaling.cli.main", "scaling.config", "scaling.data.sibling", "scaling.kernels",
                     "scaling.models.builder", "scaling.training"]
