"""``scaling data``: convert datasets to shards, inspect them, cache encoder features, benchmark decoding.

    scaling data convert coco --annotations dataset_coco.json --media coco/images --out 'shards/coco/{split}-%06d.tar'
    scaling data convert vqav2 --questions v2_OpenEnded_mscoco_train2014_questions.json \\
        --annotations v2_mscoco_train2014_annotations.json --media coco/images --split train --out 'shards/vqav2/{split}-%06d.tar'
    scaling data inspect shards/coco
    scaling data cache-features --config cfg.yaml --views 4 --out features/coco      (every split cfg.yaml names)
    scaling data bench shards/coco --split train

See docs/data.md for the shard format and every dataset's files.
"""

from __future__ import annotations

import argparse


def register(subparsers) -> None:
    p = subparsers.add_parser("data", help="convert / inspect / cache-features / bench datasets as webdataset shards",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="data_command", metavar="SUBCOMMAND")
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])

    from scaling.config.tasks import TASK_NAMES
    from scaling.data.annotations import PARSERS
    from scaling.data.shards import DEFAULT_MAX_SHARD_BYTES, DEFAULT_SAMPLES_PER_SHARD

    c = sub.add_parser("convert", help="official annotations + media folder → shards + index.json",
                       formatter_class=argparse.RawDescriptionHelpFormatter,
                       description="Convert a dataset as downloaded into webdataset shards.\n\n"
                                   f"Datasets: {', '.join(PARSERS)}.\nSee docs/data.md for the files each one reads.")
    c.add_argument("dataset", help=" | ".join(PARSERS))
    c.add_argument("--out", required=True, metavar="PATTERN", help="shard pattern, e.g. 'shards/coco/{split}-%%06d.tar' "
                                                                   "(index.json goes in the folder before {split})")
    c.add_argument("--annotations", metavar="FILE", help="the official annotation file (JSON/CSV/JSONL)")
    c.add_argument("--questions", metavar="FILE", help="vqav2/okvqa/gqa: the questions JSON")
    c.add_argument("--media", "--images", "--audio", "--videos", dest="media", metavar="DIR",
                   help="folder with the media as downloaded (searched by path, file name and stem)")
    c.add_argument("--split", help="output split name (default: from the file / its records)")
    c.add_argument("--mapping", metavar="FILE", help="msvd-qa: youtube_mapping.txt (vid<N> → YouTube clip name)")
    c.add_argument("--task", choices=TASK_NAMES, help="jsonl: the task of the records")
    c.add_argument("--modality", choices=["image", "audio", "video"], help="jsonl: the media modality")
    c.add_argument("--samples-per-shard", type=int, default=DEFAULT_SAMPLES_PER_SHARD,
                   help=f"samples per shard (default {DEFAULT_SAMPLES_PER_SHARD}, ~1 GB of COCO images)")
    c.add_argument("--max-shard-bytes", type=int, default=DEFAULT_MAX_SHARD_BYTES, help="roll over at this size too")
    c.add_argument("--max-side", type=int, help="re-encode images (and frames) larger than this side to JPEG q=90")
    c.add_argument("--video-frames", type=int, help="store N uniformly spaced JPEG frames instead of the video file")
    c.add_argument("--workers", type=int, default=0, help="processes reading/encoding media (audio is re-encoded)")
    c.add_argument("--seed", type=int, default=0, help="seed of the training-split shuffle")
    c.add_argument("--no-shuffle", action="store_true", help="keep the annotation order in training splits")
    c.add_argument("--group-duplicates", choices=["auto", "yes", "no"], default="auto",
                   help="merge samples with the same media and prompt (auto: training splits only)")
    c.add_argument("--limit", type=int, help="convert the first N items per split only (smoke tests)")
    c.add_argument("--verify", action="store_true", help="fully decode every image/video while converting")
    c.add_argument("--no-progress", action="store_true")
    c.set_defaults(func=run_convert)

    i = sub.add_parser("inspect", help="sample counts, modalities, answers, text and media statistics, a few samples")
    i.add_argument("shards", metavar="SHARDS", help="folder with index.json, an index.json, or a shard URL pattern")
    i.add_argument("--split", help="only this split")
    i.add_argument("--decode", type=int, default=20, help="decode the media of the first N samples (sizes, durations)")
    i.add_argument("--show", type=int, default=3, help="samples to print")
    i.add_argument("--tokenizer", metavar="DIR", help="also count prompt tokens with this tokenizer (an LLM folder)")
    i.add_argument("--max-samples", type=int, help="stop after N samples")
    i.add_argument("--write-index", action="store_true", help="write index.json for shards without one")
    i.set_defaults(func=run_inspect)

    f = sub.add_parser("cache-features", help="run the frozen encoder once; write fp16 feature shards")
    f.add_argument("--config", required=True, metavar="CFG.yaml")
    f.add_argument("--split", action="append", help="split(s) to cache (repeatable; default: all set in data.*)")
    f.add_argument("--views", type=int, default=1, help="augmented views per training sample (1 = one clean view)")
    f.add_argument("--out", required=True, metavar="DIR", help="output folder (then train with data.use_features=true "
                                                             "data.features=DIR)")
    f.add_argument("--batch-size", type=int, help="encoder batch (default eval.batch_size)")
    f.add_argument("--device", help="cuda / cuda:1 / cpu (default: cuda when available)")
    f.add_argument("--parts", type=int, default=1, help="split the work over N processes ...")
    f.add_argument("--part", type=int, default=0, help="... this one is part I (0-based)")
    f.add_argument("--num-workers", type=int, help="decoding workers (default data.num_workers)")
    f.add_argument("--no-progress", action="store_true")
    f.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides, e.g. model.extract.n_levels=4")
    f.set_defaults(func=run_cache)

    b = sub.add_parser("bench", help="decoded samples/s per modality (and for cached features)")
    b.add_argument("shards", metavar="SHARDS", help="folder with index.json, an index.json, or a shard URL pattern")
    b.add_argument("--split", default="train")
    b.add_argument("--modality", choices=["image", "audio", "video", "features"], help="default: from the samples")
    b.add_argument("-n", type=int, default=200, help="samples to decode")
    b.add_argument("--config", metavar="CFG.yaml", help="use this config's encoder sizes and augmentation")
    b.set_defaults(func=run_bench)


def run_convert(args) -> int:
    from scaling.data.converters import convert

    convert(args.dataset, args.out, annotations=args.annotations, questions=args.questions, media=args.media,
            split=args.split, mapping=args.mapping, task=args.task, modality=args.modality,
            samples_per_shard=args.samples_per_shard, max_shard_bytes=args.max_shard_bytes, max_side=args.max_side,
            video_frames=args.video_frames, workers=args.workers, seed=args.seed, shuffle=not args.no_shuffle,
            group=args.group_duplicates, limit=args.limit, verify=args.verify, progress=not args.no_progress)
    return 0


def run_inspect(args) -> int:
    from scaling.data.inspect import inspect_shards

    tok = None
    if args.tokenizer:
        from transformers import AutoTokenizer

        tok = AutoTokenizer.from_pretrained(args.tokenizer)
    report = inspect_shards(args.shards, args.split, args.decode, args.show, tok, args.max_samples, args.write_index)
    return 1 if any(r["problems"] for r in report.values()) else 0


def run_cache(args) -> int:
    import torch

    from scaling.config import load_config
    from scaling.data.features import cache_features
    from scaling.models.transforms import build_extractor

    cfg = load_config(args.config, args.overrides)
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    extractor, encoder = build_extractor(cfg.model, device, cfg.data)
    cache_features(cfg, args.out, extractor, encoder, args.split, args.views, args.batch_size, args.parts, args.part,
                   num_workers=args.num_workers, progress=not args.no_progress)
    return 0


def run_bench(args) -> int:
    from scaling.data.bench import bench

    cfg = spec = None
    if args.config:
        from scaling.config import load_config
        from scaling.models.transforms import media_spec

        cfg = load_config(args.config)
        spec = lambda: media_spec(cfg.model, cfg.data)  # noqa: E731 - only when media are decoded
    bench(args.shards, args.split, args.n, args.modality, cfg, spec=spec)
    return 0
