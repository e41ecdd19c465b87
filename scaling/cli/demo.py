"""``scaling demo``: train a perceptual interface end to end on a CPU, offline, in about six minutes (2 CPU cores, first run).

    scaling demo                                  # DePALM vs the blind baseline, images (captions, VQA) + audio
    scaling demo --methods depalm,limber-1,mapl   # more presets (the blind baseline is always added)
    scaling demo --quick                          # smaller data and budgets (~3 min with a warm cache; what the test runs)
    scaling demo --json                           # the results table as JSON on the last line
    scaling demo --export-backbones demo          # the data and tiny backbones as folders (configs/demo_caption.yaml)

It renders a synthetic dataset (coloured shapes with captions and questions, tones with captions),
converts it to shards with the public converter, pretrains a tiny ViT (image-only task), a tiny AST
(audio-only) and a tiny LLaMA (text only), caches encoder features, trains each method with the
project's trainer and evaluates it with the paper metrics. Datasets, backbones and features are
cached (``--cache-dir``, default ``~/.cache/scaling/demo``); ``--fresh`` rebuilds them.
"""

from __future__ import annotations

import argparse


def register(subparsers) -> None:
    p = subparsers.add_parser("demo", help="offline CPU demo: pretrain tiny backbones, train DePALM, compare with the blind LM",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--methods", default="depalm", help="comma-separated presets of `scaling methods` (default: depalm; "
                                                      "the blind baseline is always added)")
    p.add_argument("--quick", action="store_true", help="smaller dataset and step budgets, image tasks only (~3 minutes with a warm cache; a first run also builds the data and backbones)")
    p.add_argument("--fresh", action="store_true", help="rebuild the cached dataset, backbones and features")
    p.add_argument("--cache-dir", default=None, help="cache of datasets/backbones/features (default ~/.cache/scaling/demo)")
    p.add_argument("--out", default="runs/demo", help="output folder: training runs, TensorBoard logs, grid, results.json")
    p.add_argument("--seed", type=int, default=0, help="seed of the data, the pretraining and the training (default 0)")
    p.add_argument("--no-audio", action="store_true", help="image tasks only")
    p.add_argument("--workers", type=int, default=2, help="single-threaded worker processes (default 2; 0 = in process)")
    p.add_argument("--json", action="store_true", help="print the results table (method → metric → value) as JSON last")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--export-backbones", metavar="DIR",
                   help="only build (or reuse) the demo's dataset shards and pretrained tiny backbones and copy them to "
                        "DIR (DIR/llm, DIR/vit, DIR/ast, DIR/shards/TASK, DIR/images): real Hugging Face folders for "
                        "configs/demo_caption.yaml (`--export-backbones demo` from the repository root)")
    p.set_defaults(func=run)


def run(args) -> int:
    import dataclasses
    import json

    from scaling.demo.cache import default_cache_dir
    from scaling.demo.run import FULL, QUICK, run_demo

    settings = dataclasses.replace(QUICK if args.quick else FULL)
    if args.no_audio:
        settings.audio = False
    settings.workers = max(0, args.workers)
    if args.export_backbones:
        from scaling.demo.export import export_backbones

        out = export_backbones(args.export_backbones, settings, args.cache_dir or default_cache_dir(), seed=args.seed,
                               fresh=args.fresh, progress=not args.no_progress)
        for name, path in out.items():
            print(f"{name:8s} {path}")
        print("next (from the folder holding it, e.g. the repository root for `--export-backbones demo`):\n"
              "  scaling train --config configs/demo_caption.yaml")
        return 0
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    summary = run_demo(methods, settings, args.cache_dir or default_cache_dir(), args.out, seed=args.seed,
                       fresh=args.fresh, progress=not args.no_progress)
    if args.json:
        print(json.dumps(summary["results"], sort_keys=True), flush=True)
    return 0
