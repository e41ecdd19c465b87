"""``scaling inspect``: what a checkpoint or adapter holds.

    scaling inspect runs/coco                      (its latest checkpoint)
    scaling inspect runs/coco/checkpoints/step_004000 --json
    scaling inspect coco_depalm.safetensors
    scaling inspect runs/coco/best                 (the best adapter)

Prints the method, the backbones (paths and architectures), the step, trainable parameter counts per
component, the training state (strategy, ZeRO stage, world size, skipped steps, time) and the last
metrics. ``--json`` prints one JSON object.
"""

from __future__ import annotations

import argparse
import json


def register(subparsers) -> None:
    p = subparsers.add_parser("inspect", help="describe a checkpoint or adapter (method, backbones, step, parameters, metrics)",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoint", metavar="CKPT", help="checkpoint dir, run dir, adapter file or adapter dir (RUN/best)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=run)


def run(args) -> int:
    from scaling.training.convert import describe, format_description

    info = describe(args.checkpoint)
    print(json.dumps(info, indent=2, default=str) if args.json else format_description(info))
    return 0
