"""``scaling plan``: per-GPU memory part by part, the fastest setting that fits, step time and GPU-hours, launch line.

    scaling plan --config configs/coco_depalm.yaml --gpu v100-32 --nodes 2 --gpus-per-node 8
    scaling plan --config configs/vqav2_depalm.yaml --gpu-mem 48 --peak-tflops 181 --mfu RUN/train_summary.json

Backbones are counted at their real shapes on the meta device (placeholder paths of the shipped configs are planned
with the shape they name); nothing is downloaded or allocated. See docs/training.md "Planning a run".
"""

from __future__ import annotations

import argparse
import json


def register(sub) -> None:
    p = sub.add_parser("plan", help="per-GPU memory, the fastest setting that fits, time and launch line for a config",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(p, with_config=True)
    p.set_defaults(func=run)


def add_arguments(p, with_config: bool) -> None:
    from scaling.plan.gpus import GPUS

    if with_config:
        p.add_argument("--config", "-c", metavar="YAML", required=True, help="experiment config (configs/*.yaml)")
        p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides")
        p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--gpu", default=None, help=f"GPU: {', '.join(GPUS)}, cpu (default v100-32)")
    p.add_argument("--gpu-mem", type=float, default=None, metavar="GB", help="a custom GPU's memory (with --peak-tflops)")
    p.add_argument("--peak-tflops", type=float, default=None, metavar="N", help="a custom GPU's dense 16-bit peak")
    p.add_argument("--gpu-arch", type=int, default=80, metavar="SM", help="a custom GPU's compute capability x 10: 70 "
                   "(V100 class: no bf16, no FlashAttention), 80/86 (Ampere), 89/90 (FP8); default 80")
    p.add_argument("--nodes", type=int, default=1)
    p.add_argument("--gpus-per-node", type=int, default=8)
    p.add_argument("--mfu", default=None, help="model FLOPs utilisation: a number, `scaling bench --json` output, or a "
                   "past run's train_summary.json (default 0.35)")
    p.add_argument("--net-gbps", type=float, default=None, help="inter-node network per node, Gbit/s (default 100)")
    p.add_argument("--samples", type=int, default=None, help="training samples per epoch (default: from the config)")


def plan_for(cfg, config_path: str, args) -> dict:
    from scaling.config.base import ConfigError
    from scaling.plan.gpus import get_gpu
    from scaling.plan.planner import make_plan
    from scaling.plan.timing import DEFAULT_NET_GBPS

    if args.nodes < 1 or args.gpus_per_node < 1:
        raise ConfigError(f"--nodes and --gpus-per-node must be >= 1, got {args.nodes} and {args.gpus_per_node}")
    gpu = get_gpu(args.gpu or ("v100-32" if args.gpu_mem is None else None), args.gpu_mem, args.peak_tflops,
                  arch=args.gpu_arch)
    return make_plan(cfg, config_path, gpu, args.nodes, args.gpus_per_node, args.mfu,
                     args.net_gbps or DEFAULT_NET_GBPS, samples=args.samples)


def run(args) -> int:
    from scaling.config import load_config
    from scaling.plan.render import render

    cfg = load_config(args.config, args.overrides)
    plan = plan_for(cfg, args.config, args)
    print(json.dumps(plan, indent=1) if args.json else render(plan))
    return 0 if plan["recommendation"] else 1
