"""``scaling sweep``: expand a grid × seeds into one config per point; optionally run them or write a SLURM array.

    scaling sweep --config CFG.yaml --grid train.lr=1e-3,8e-4,4e-4 --grid train.clip=0.8,1.0 \\
        --seeds 0-4 --out SWEEP_DIR [--run | --slurm]

Writes SWEEP_DIR/<point>/config.yaml (train.seed and train.output_dir set per point) and
SWEEP_DIR/points.json. ``--run`` trains the points one after the other and skips those that finished
before (their train_summary.json says so; rerun the same command to resume); ``--slurm`` writes SWEEP_DIR/sweep.sbatch, a job
array with one task per point. Afterwards: ``scaling report SWEEP_DIR``.
"""

from __future__ import annotations

import argparse
import shlex


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "sweep",
        help="expand a hyper-parameter grid × seeds into configs; run them or write a SLURM job array",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--config", required=True, metavar="CFG.yaml", help="base config")
    p.add_argument(
        "--grid",
        action="append",
        default=[],
        metavar="KEY=V1,V2,...",
        help="one grid axis (repeatable), e.g. train.lr=1e-3,8e-4; list values in brackets: model.x=[a,b],[c]",
    )
    p.add_argument("--seeds", default=None, help="'0-4', '0,1,2' or '0-2,7' (default: train.seed of the config, or 0)")
    p.add_argument("--out", required=True, metavar="SWEEP_DIR", help="directory for the points' configs and runs")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--run", action="store_true", help="train the points in sequence here (resumable)")
    mode.add_argument("--slurm", action="store_true", help="write SWEEP_DIR/sweep.sbatch (a SLURM job array)")
    p.add_argument(
        "--train-command",
        default=None,
        help="with --run: the command that trains one config (it gets '--config PATH' appended); "
        "default: '<this python> -m scaling train'; e.g. 'torchrun --nproc_per_node=8 -m scaling train'",
    )
    p.add_argument("--fail-fast", action="store_true", help="with --run: stop at the first failed point")
    p.add_argument(
        "--train-sbatch",
        default=None,
        metavar="PATH",
        help="with --slurm: training job script submitted per point with `sbatch --export=ALL,CONFIG=...` "
        "(default: launch/slurm_train.sbatch when it exists; otherwise the array runs srun itself)",
    )
    p.add_argument("--no-validate", action="store_true", help="write the configs without checking them against the config schema")
    p.set_defaults(func=run)


def run(args) -> int:
    from scaling.evaluation.sweep import (
        DEFAULT_TRAIN_COMMAND,
        find_train_sbatch,
        parse_seeds,
        run_points,
        write_slurm,
        write_sweep,
    )

    seeds = parse_seeds(args.seeds) if args.seeds is not None else None
    points = write_sweep(args.config, args.grid, seeds, args.out, validate=not args.no_validate)
    finished = sum(p.finished for p in points)
    print(f"sweep: {len(points)} points in {args.out} ({finished} already finished); index: {args.out}/points.json")
    for p in points:
        print(f"  {p.index:3d}  {p.name}{'  (finished)' if p.finished else ''}")

    if args.slurm:
        path = write_slurm(points, args.out, find_train_sbatch(args.train_sbatch))
        print(f"wrote {path}: set the '>>> SET' lines, then `sbatch {path}`")
        return 0
    if args.run:
        command = shlex.split(args.train_command) if args.train_command else list(DEFAULT_TRAIN_COMMAND)
        result = run_points(points, command, fail_fast=args.fail_fast)
        from scaling.cli.summary import sweep_block

        print(sweep_block(result, args.out, points))
        return 1 if result["failed"] else 0
    print(f"next: `scaling sweep ... --run` to train them here, or `--slurm` for a job array; then `scaling report {args.out}`")
    return 0
