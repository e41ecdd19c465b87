"""``scaling score``: score a predictions JSON-lines file against references (captions, VQA, GQA, video QA).

    scaling score --task caption --predictions preds.jsonl --references refs.jsonl [--json]

Prints a small table (stored value and the ×100 the papers print), or with ``--json`` one JSON object
as the last line of stdout: ``{"task": ..., "n_samples": ..., "metrics": {...}, "notes": [...]}``.
Caption metrics are on pycocoevalcap's scale (CIDEr ~1.2 for a good COCO model); SPICE is null when
its CoreNLP jars are not installed.
"""

from __future__ import annotations

import argparse
import json


def register(subparsers) -> None:
    from scaling.evaluation.metrics import TASKS

    p = subparsers.add_parser(
        "score",
        help="score predictions against references (BLEU/METEOR/ROUGE-L/CIDEr/SPICE, VQA accuracy, exact match)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--task", required=True, choices=TASKS, help=" | ".join(TASKS))
    p.add_argument("--predictions", required=True, metavar="PRED.jsonl", help='lines {"id": ..., "prediction": "..."}')
    p.add_argument(
        "--references",
        required=True,
        metavar="REF.jsonl",
        help='lines {"id": ..., "references": [...]} ("answers" or "captions" also accepted)',
    )
    p.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    p.add_argument("--no-meteor", action="store_true", help="caption: skip METEOR (a Java start of a few seconds)")
    p.set_defaults(func=run)


def run(args) -> int:
    from scaling.evaluation.metrics import compute_metrics, format_table, metric_notes
    from scaling.evaluation.records import read_predictions, read_references

    predictions = read_predictions(args.predictions)
    references = read_references(args.references)
    options = {"meteor": False} if (args.task == "caption" and args.no_meteor) else {}
    metrics = compute_metrics(args.task, predictions, references, **options)
    if args.json:
        print(
            json.dumps(
                {
                    "task": args.task,
                    "n_samples": len(references),
                    "metrics": metrics,
                    "scale": "pycocoevalcap scale / fractions (multiply by 100 for the papers' numbers)",
                    "notes": metric_notes(metrics),
                }
            )
        )
    else:
        print(format_table(args.task, metrics, n_samples=len(references)))
    return 0
