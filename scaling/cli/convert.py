"""``scaling convert``: a checkpoint (any ZeRO stage) → adapter, peft directory or consolidated fp32 file.

    scaling convert runs/coco/checkpoints/step_004000 --to adapter coco_depalm.safetensors
    scaling convert runs/coco --to peft coco_lora/            (methods with LoRA)
    scaling convert runs/coco --to consolidated coco_fp32.safetensors

CKPT is a checkpoint directory, a run directory (its latest checkpoint), an adapter file or an
adapter-only directory such as ``RUN/best``. Load an
adapter with ``scaling.training.checkpoint.load_adapter(path, device)``: it rebuilds the model from
the stored config and refuses backbones whose fingerprints differ.
"""

from __future__ import annotations

import argparse


def register(subparsers) -> None:
    p = subparsers.add_parser("convert", help="convert a checkpoint to an adapter, a peft directory or a consolidated fp32 file",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoint", metavar="CKPT", help="checkpoint dir, run dir, adapter file or adapter dir (RUN/best)")
    p.add_argument("--to", required=True, choices=["adapter", "peft", "consolidated"], dest="fmt")
    p.add_argument("out", metavar="OUT", help="output file (adapter, consolidated) or directory (peft)")
    p.add_argument("--from-shards", action="store_true",
                   help="adapter: rebuild the weights from DeepSpeed's ZeRO partitions instead of the saved adapter")
    p.set_defaults(func=run)


def run(args) -> int:
    from scaling.training.convert import convert

    out = convert(args.checkpoint, args.fmt, args.out, from_shards=args.from_shards)
    print(out)
    return 0
