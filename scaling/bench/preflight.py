"""Checks ``launch/bench_gpu.sh`` runs before it spends GPU time: a clear stop if something it needs is missing.

    python -m scaling.bench.preflight --device cuda --part 1     (exit 0: go; 1: stop, with what to do)

Prints the versions it found. Needed: torch and transformers (the image has them), the benchmark modules
importing from this tree (no install of ``scaling``: the script runs from the repository root), and on
``cuda`` a visible GPU and Triton. Part 1 also needs Liger-Kernel on ``cuda`` (its comparison is a
headline figure); ``ALLOW_MISSING=1`` turns that stop into a skipped row. torchao (part 2) and pytest
(the GPU tests) are optional: their rows say they were missing. Packages the image lacks travel as
wheels: ``bash ../shared/tools/device-wheels.sh liger-kernel==0.8.5 torchao==0.18.0 pytest==...`` fills
``.whl/``, which the script installs (``docs/gpu_bench.md``).
"""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata
import importlib.util
import os
import sys

WHEELS_FIX = ("build its wheel here with bash ../shared/tools/device-wheels.sh {dist} (it lands in .whl/), then pass "
              "carry=[\".whl\"] to the device call: launch/bench_gpu.sh installs .whl/*.whl itself (docs/gpu_bench.md)")
VERSIONS = {"torch": "torch", "transformers": "transformers", "triton": "triton", "liger_kernel": "liger-kernel",
            "torchao": "torchao", "pytest": "pytest", "accelerate": "accelerate", "peft": "peft", "timm": "timm"}
BENCH_MODULES = ("scaling.bench.step", "scaling.bench.generate", "scaling.bench.summary", "scaling.cli.bench")


def _version(module: str) -> str | None:
    if importlib.util.find_spec(module) is None:
        return None
    try:
        return importlib.metadata.version(VERSIONS.get(module, module))
    except importlib.metadata.PackageNotFoundError:
        return "?"


def check(device: str, part: str, allow_missing: bool = False) -> tuple[list[str], list[str], list[str]]:
    """(lines to print, problems that stop the run, warnings)."""
    lines = [f"python {sys.version.split()[0]} ({sys.executable})"]
    problems, warnings = [], []
    found = {m: _version(m) for m in VERSIONS}
    lines.append("  ".join(f"{VERSIONS[m]} {v or 'missing'}" for m, v in found.items()))
    for module in ("torch", "transformers"):
        if found[module] is None:
            problems.append(f"{module} is not importable by {sys.executable}: run the script with the Python that has it "
                            f"(PYTHON=/path/to/python3 bash launch/bench_gpu.sh ...)")
    if problems:
        return lines, problems, warnings
    for module in BENCH_MODULES:  # the tree itself, from the repository root, with the packages present
        try:
            importlib.import_module(module)
        except ImportError as err:
            name = getattr(err, "name", None) or str(err)
            if name == "scaling" or name.startswith("scaling."):
                problems.append(f"{module} does not import from {os.getcwd()} ({err}): run the script from a checkout "
                                "of the repository (it cds to its root; no install of scaling is needed)")
            else:
                dist = name.split(".")[0].replace("_", "-")
                problems.append(f"{module} needs {name!r}, which is missing: {WHEELS_FIX.format(dist=dist)}")
    import torch

    import scaling

    lines.append(f"scaling from {os.path.dirname(os.path.dirname(os.path.abspath(scaling.__file__)))}")
    if device == "cuda":
        if not torch.cuda.is_available():
            problems.append("no CUDA GPU is visible to torch (DEVICE=cpu bash launch/bench_gpu.sh DIR is the CPU dry run)")
        else:
            lines.append(f"GPU: {torch.cuda.get_device_name()} (compute capability "
                         f"{'.'.join(map(str, torch.cuda.get_device_capability()))}), CUDA {torch.version.cuda}")
        if found["triton"] is None:
            problems.append("triton is missing: the project's kernels need it on a GPU (pip install triton)")
    liger_why = f"liger-kernel is missing: the plain+Liger-Kernel row will be skipped; {WHEELS_FIX.format(dist='liger-kernel==0.8.5')}"
    if part in ("1", "all") and found["liger_kernel"] is None:
        if device == "cuda" and not allow_missing:
            problems.append(liger_why.replace("will be skipped", "is a headline figure") + " (or ALLOW_MISSING=1 to run without it)")
        else:
            warnings.append(liger_why)
    if part in ("2", "all"):
        if found["torchao"] is None:
            warnings.append(f"torchao is missing: the torchao float8 row will be skipped; {WHEELS_FIX.format(dist='torchao==0.18.0')}")
        if device == "cuda" and found["pytest"] is None:
            warnings.append(f"pytest is missing: the GPU tests will not run; {WHEELS_FIX.format(dist='pytest')}")
    return lines, problems, warnings


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cuda")
    p.add_argument("--part", default="all", choices=["1", "2", "all"])
    p.add_argument("--allow-missing", action="store_true", help="run without Liger-Kernel on cuda (its row is skipped)")
    args = p.parse_args(argv)
    lines, problems, warnings = check(args.device, args.part, args.allow_missing)
    print("\n".join(lines))
    for w in warnings:
        print(f"WARNING: {w}")
    if problems:
        print("STOP: launch/bench_gpu.sh cannot run here:\n" + "\n".join(f"  - {x}" for x in problems), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
