"""Hyper-parameter sweeps: expand a grid × seeds into one config per point, run them or write a SLURM array.

``expand_sweep`` turns ``--grid train.lr=1e-3,8e-4 --grid train.clip=0.8,1.0 --seeds 0-4`` into the
cartesian product of the grid values times the seeds. ``write_sweep`` writes, for each point,
``SWEEP_DIR/<point_name>/config.yaml`` — the base config (``load_yaml``) with the grid values applied
(``apply_overrides``), ``train.seed`` set to the seed and ``train.output_dir`` to the point's own
directory (absolute), which is also the run directory that ``scaling report`` reads — plus a
``points.json`` index. Every grid combination is first validated with the project's config schema
(``scaling.config.config_from_dict``), so a typo fails before anything is written or submitted. A point
whose ``train_summary.json`` says ``"finished": true`` (the trainer writes it at the end of a run; a preempted
run says false) is finished: its config is left as it is, ``run_points`` skips it (so a sweep resumes), and
the SLURM array task exits. (Runs on a synthetic source without references (:mod:`scaling.data.sources`) finish without ``metrics.json``: they have
no references to score, only a validation loss.)

Grid values are parsed as YAML (``[q_proj,v_proj]`` is one list value: commas inside brackets do not
split), and number-like strings YAML 1.1 leaves as text (``1e-3``) become floats.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import os
import re
import shlex
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from scaling.common.values import KeyValueError, as_number, parse_scalar, split_key_value
from scaling.config.base import ConfigError, apply_overrides, load_yaml

#: Keys the sweep sets itself; they cannot be grid keys.
RESERVED_KEYS = ("train.seed", "train.output_dir")
DEFAULT_TRAIN_COMMAND = (sys.executable, "-m", "scaling", "train")


@dataclasses.dataclass
class SweepPoint:
    index: int
    name: str
    seed: int
    values: dict[str, Any]  # grid key -> parsed value
    raw: dict[str, str]  # grid key -> the string given on the command line
    run_dir: str
    config: str

    @property
    def finished(self) -> bool:
        """The trainer's ``train_summary.json`` says the run reached its end."""
        try:
            with open(os.path.join(self.run_dir, "train_summary.json")) as fh:
                return json.load(fh).get("finished") is True
        except (OSError, ValueError, AttributeError):
            return False


def parse_seeds(text: str) -> list[int]:
    """``'0-4'`` → [0, 1, 2, 3, 4]; ``'0,1,2'``; ``'0-2,7'``. Errors say the accepted syntax."""
    seeds: list[int] = []
    for part in str(text).split(","):
        part = part.strip()
        m = re.fullmatch(r"(\d+)\s*-\s*(\d+)|(\d+)", part)
        if not m:
            raise ConfigError(f"--seeds {text!r}: {part!r} is not a seed or a range; use e.g. '0-4' or '0,1,2' or '0-2,7'")
        if m.group(3) is not None:
            new = [int(m.group(3))]
        else:
            lo, hi = int(m.group(1)), int(m.group(2))
            if hi < lo:
                raise ConfigError(f"--seeds {text!r}: range {part!r} goes down; write it as '{hi}-{lo}'")
            new = list(range(lo, hi + 1))
        for s in new:
            if s in seeds:
                raise ConfigError(f"--seeds {text!r}: seed {s} is listed twice")
            seeds.append(s)
    return seeds


def split_values(text: str) -> list[str]:
    """Split on commas that are not inside [...] or {...} or quotes."""
    out, depth, quote, cur = [], 0, None, []
    for ch in text:
        if quote:
            quote = None if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch in "[{":
            depth += 1
        elif ch in "]}":
            depth -= 1
        elif ch == "," and depth == 0:
            out.append("".join(cur).strip())
            cur = []
            continue
        cur.append(ch)
    out.append("".join(cur).strip())
    return out


def parse_value(key: str, raw: str) -> Any:
    """A grid value as the config will hold it (YAML, plus ``1e-3``-style numbers as floats)."""
    return as_number(parse_scalar(raw))


def parse_grid(items: Sequence[str]) -> list[tuple[str, list[str]]]:
    """``['train.lr=1e-3,8e-4', ...]`` → ``[('train.lr', ['1e-3', '8e-4']), ...]`` (order kept)."""
    grid: list[tuple[str, list[str]]] = []
    for item in items:
        try:
            key, values = split_key_value(item, form="KEY=V1,V2,... (e.g. --grid train.lr=1e-3,8e-4)")
        except KeyValueError as err:
            raise ConfigError(f"--grid {err}") from None
        if key in RESERVED_KEYS:
            raise ConfigError(f"--grid {key}: the sweep sets {key} itself (use --seeds / --out)")
        if any(key == k for k, _ in grid):
            raise ConfigError(f"--grid {key} is given twice; put all its values in one --grid {key}=V1,V2,...")
        raws = split_values(values)
        if not values.strip() or any(v == "" for v in raws):
            raise ConfigError(f"--grid {item!r} has an empty value; write --grid {key}=V1,V2,...")
        if len(set(raws)) != len(raws):
            raise ConfigError(f"--grid {item!r} lists a value twice")
        grid.append((key, raws))
    return grid


def _sanitize(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._+-]+", "_", text).strip("_") or "x"


def _labels(keys: Sequence[str]) -> dict[str, str]:
    """Short label per grid key: the last component when that is unambiguous, else the full key."""
    last = [k.split(".")[-1] for k in keys]
    return {k: (short if last.count(short) == 1 else k) for k, short in zip(keys, last)}


def point_name(raw: dict[str, str], seed: int, labels: dict[str, str]) -> str:
    parts = [f"{_sanitize(labels[k])}-{_sanitize(v)}" for k, v in raw.items()]
    return "__".join(parts + [f"seed-{seed}"])


def expand_sweep(grid: list[tuple[str, list[str]]], seeds: Sequence[int], out_dir: str) -> list[SweepPoint]:
    """Every grid combination × every seed, in order (seeds vary fastest)."""
    if not seeds:
        raise ConfigError("the sweep needs at least one seed (--seeds 0-4)")
    root = os.path.abspath(out_dir)
    keys = [k for k, _ in grid]
    labels = _labels(keys)
    points: list[SweepPoint] = []
    names: set[str] = set()
    for combo in itertools.product(*[vals for _, vals in grid]):
        raw = dict(zip(keys, combo))
        values = {k: parse_value(k, v) for k, v in raw.items()}
        for seed in seeds:
            name = point_name(raw, seed, labels)
            if name in names:  # two raw values that sanitise alike
                name = f"{name}__{len(points)}"
            names.add(name)
            run_dir = os.path.join(root, name)
            points.append(
                SweepPoint(len(points), name, int(seed), values, raw, run_dir, os.path.join(run_dir, "config.yaml"))
            )
    return points


def _get(data: dict[str, Any], dotted: str) -> tuple[bool, Any]:
    node: Any = data
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return False, None
        node = node[part]
    return True, node


def validate_points(base: dict[str, Any], points: Sequence[SweepPoint]) -> None:
    """Build every grid combination's config with the project's schema; one ConfigError listing all problems."""
    from scaling.config import config_from_dict

    problems: dict[str, list[str]] = {}
    seen: set[str] = set()
    for point in points:
        combo = json.dumps(point.raw, sort_keys=True)
        if combo in seen:  # seeds do not change validity
            continue
        seen.add(combo)
        try:
            config_from_dict(point_config(base, point))
        except ConfigError as err:
            for problem in err.problems:
                problems.setdefault(problem, []).append(point.name.rsplit("__seed-", 1)[0])
    if problems:
        n = len(seen)
        raise ConfigError(
            [
                f"{problem} ({'every grid point' if len(names) == n else 'grid points ' + ', '.join(names[:4]) + (', ...' if len(names) > 4 else '')})"
                for problem, names in problems.items()
            ]
            + ["fix the base config or the --grid keys (or pass --no-validate for keys this version does not know)"]
        )


def point_config(base: dict[str, Any], point: SweepPoint) -> dict[str, Any]:
    cfg = apply_overrides(base, [f"{k}={v}" for k, v in point.raw.items()])
    for key, value in point.values.items():  # '1e-3' → 1e-3 (YAML 1.1 reads it as a string)
        node = cfg
        parts = key.split(".")
        for part in parts[:-1]:
            node = node[part]
        node[parts[-1]] = value
    cfg = apply_overrides(cfg, [f"train.seed={point.seed}"])
    cfg["train"]["output_dir"] = point.run_dir
    return cfg


def write_sweep(
    base_config: str, grid_items: Sequence[str], seeds: Sequence[int] | None, out_dir: str, validate: bool = True
) -> list[SweepPoint]:
    """Write every point's config.yaml and ``points.json`` (after validating the configs) and return the points."""
    base = load_yaml(base_config)
    grid = parse_grid(grid_items)
    if seeds is None:
        found, seed = _get(base, "train.seed")
        seeds = [int(seed)] if found and seed is not None else [0]
    points = expand_sweep(grid, seeds, out_dir)
    if validate:
        validate_points(base, points)
    os.makedirs(out_dir, exist_ok=True)
    for point in points:
        os.makedirs(point.run_dir, exist_ok=True)
        if point.finished:
            continue  # keep the config the finished run was trained with
        with open(point.config, "w") as fh:
            yaml.safe_dump(point_config(base, point), fh, sort_keys=False)
    index = {
        "base_config": os.path.abspath(base_config),
        "grid": {k: v for k, v in grid},
        "seeds": list(seeds),
        "points": [dataclasses.asdict(p) for p in points],
    }
    with open(os.path.join(out_dir, "points.json"), "w") as fh:
        json.dump(index, fh, indent=2)
    return points


def load_points(sweep_dir: str) -> list[SweepPoint]:
    path = os.path.join(sweep_dir, "points.json")
    try:
        with open(path) as fh:
            index = json.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"{path} does not exist; create the sweep first with `scaling sweep --config ... --out {sweep_dir}`") from None
    return [SweepPoint(**p) for p in index["points"]]


def _stderr_fd() -> int | None:
    """Our stderr's file descriptor (a child's stdout goes there), or None (inherit) when it has none."""
    try:
        return sys.stderr.fileno()
    except (AttributeError, OSError, ValueError):
        return None


def run_points(
    points: Sequence[SweepPoint],
    train_command: Sequence[str] = DEFAULT_TRAIN_COMMAND,
    fail_fast: bool = False,
    log=None,
) -> dict[str, list[str]]:
    """Train the points one after the other (``<train_command> --config <config>``), skipping finished ones.

    Progress lines (``log``, default: stderr) and the trainings' own output (their stdout too) go to stderr:
    stdout is left to the sweep's result."""
    if log is None:
        def log(msg: str) -> None:
            print(msg, file=sys.stderr, flush=True)
    result: dict[str, list[str]] = {"skipped": [], "done": [], "failed": []}
    for point in points:
        tag = f"[{point.index + 1}/{len(points)}] {point.name}"
        if point.finished:
            log(f"{tag}: finished before, skipping")
            result["skipped"].append(point.name)
            continue
        cmd = [*train_command, "--config", point.config]
        log(f"{tag}: {shlex.join(cmd)}")
        sys.stderr.flush()
        rc = subprocess.call(cmd, stdout=_stderr_fd())
        if rc == 0 and point.finished:
            result["done"].append(point.name)
            continue
        why = f"exit code {rc}" if rc else "exited 0 but its train_summary.json does not say finished"
        log(f"{tag}: FAILED ({why})")
        result["failed"].append(point.name)
        if fail_fast:
            break
    return result


def find_train_sbatch(explicit: str | None = None) -> str | None:
    """``launch/slurm_train.sbatch`` from the current directory or the repository root, if it exists."""
    if explicit:
        if not os.path.isfile(explicit):
            raise ConfigError(f"--train-sbatch {explicit!r} does not exist")
        return os.path.abspath(explicit)
    repo_root = Path(__file__).resolve().parents[2]
    for cand in (Path.cwd() / "launch" / "slurm_train.sbatch", repo_root / "launch" / "slurm_train.sbatch"):
        if cand.is_file():
            return str(cand)
    return None


def slurm_script(points: Sequence[SweepPoint], sweep_dir: str, train_sbatch: str | None = None) -> str:
    """A SLURM job array: task i trains point i (skipping it when it finished before)."""
    if not points:
        raise ConfigError("no sweep points to write a SLURM array for")
    root = os.path.abspath(sweep_dir)
    n = len(points)
    configs = "\n".join(f"  {shlex.quote(p.config)}  # {p.index}" for p in points)
    head = [
        "#!/bin/bash",
        f"# SLURM job array for a sweep of {n} points written by `scaling sweep` (index: {root}/points.json).",
        f"# Submit with:  sbatch {shlex.quote(os.path.join(root, 'sweep.sbatch'))}",
        "# Array task i trains point i; a point whose train_summary.json says finished is skipped,",
        "# so resubmitting resumes the sweep. Append %K to --array to run at most K points at once.",
        "# Lines marked '>>> SET' are for you to set; '##SBATCH' lines are inactive until you remove one '#'.",
        "#SBATCH --job-name=scaling-sweep",
        f"#SBATCH --array=0-{n - 1}",
        f"#SBATCH --output={root}/slurm-%A_%a.out",
    ]
    if train_sbatch:
        head += [
            "#SBATCH --ntasks=1",
            "#SBATCH --cpus-per-task=1",
            "#SBATCH --time=24:00:00            # >>> SET: covers the training job's queue wait and run",
            "##SBATCH --partition=CHANGE_ME     # >>> SET: a partition for this small waiting task",
            "##SBATCH --account=CHANGE_ME       # >>> SET",
            "",
            "# ======================= set these =======================",
            f"TRAIN_SBATCH={shlex.quote(train_sbatch)}  # >>> SET: the training job script (reads $CONFIG)",
            'EXTRA_SBATCH_ARGS=""   # >>> SET: e.g. "--partition=gpu --account=myproj" for the training jobs',
            "# ==========================================================",
        ]
    else:
        head += [
            "#SBATCH --nodes=1",
            "#SBATCH --ntasks-per-node=1",
            "#SBATCH --gpus-per-node=8          # >>> SET: GPUs per point (DePALM: one 8-GPU node)",
            "#SBATCH --cpus-per-task=32         # >>> SET",
            "#SBATCH --time=12:00:00            # >>> SET",
            "##SBATCH --partition=CHANGE_ME     # >>> SET",
            "##SBATCH --account=CHANGE_ME       # >>> SET",
            "",
            "# ======================= set these =======================",
            'VENV=""                          # >>> SET: virtualenv to activate (empty: the submitting environment)',
            'LAUNCHER="python -m scaling"     # >>> SET: e.g. "torchrun --nproc_per_node=8 -m scaling"',
            "# ==========================================================",
        ]
    body = [
        "",
        "set -euo pipefail",
        "CONFIGS=(",
        configs,
        ")",
        'CONFIG="${CONFIGS[$SLURM_ARRAY_TASK_ID]}"',
        'RUN_DIR="$(dirname "$CONFIG")"',
        'if grep -qs \'"finished": true\' "$RUN_DIR/train_summary.json"; then',
        '  echo "point $SLURM_ARRAY_TASK_ID already finished ($RUN_DIR/train_summary.json); skipping"',
        "  exit 0",
        "fi",
        'echo "point $SLURM_ARRAY_TASK_ID: $CONFIG"',
    ]
    if train_sbatch:
        body += [
            "# The training job gets the point's config as $CONFIG (and its run directory as $RUN_DIR);",
            "# --wait makes this array task last as long as the training job, so %K throttling works.",
            'sbatch --wait --export=ALL,CONFIG="$CONFIG",RUN_DIR="$RUN_DIR" $EXTRA_SBATCH_ARGS "$TRAIN_SBATCH"',
        ]
    else:
        body += [
            'if [ -n "$VENV" ]; then source "$VENV/bin/activate"; fi',
            'srun $LAUNCHER train --config "$CONFIG"',
        ]
    return "\n".join(head + body) + "\n"


def write_slurm(points: Sequence[SweepPoint], sweep_dir: str, train_sbatch: str | None = None) -> str:
    path = os.path.join(sweep_dir, "sweep.sbatch")
    with open(path, "w") as fh:
        fh.write(slurm_script(points, sweep_dir, train_sbatch))
    os.chmod(path, 0o755)
    return path
