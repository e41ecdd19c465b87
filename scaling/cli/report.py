"""``scaling report``: the papers' tables from finished run directories (or sweep directories).

    scaling report RUN_DIR_OR_SWEEP_DIR... [--out DIR] [--json]

Mean ± std over seeds per method × benchmark, the best grid point, average rank and average
normalised score across benchmarks (DePALM Table 4), training time and the carbon footprint estimate
(DePALM supplement E: TDP V100 250 W, PUE 1.1, 0.385 kg CO2eq/kWh by default). Writes DIR/report.md,
DIR/report.csv, DIR/chart_*.png and DIR/index.html (a self-contained page: tables, learning curves, a gallery of
the test predictions with their media and per-sample scores, configs) (DIR: --out, default INPUT/report), and prints the Markdown (or, with
--json, one JSON object as the last line) to stdout, warnings to stderr. Runs with missing or broken files
are skipped with a warning naming them; runs without evaluation scores (a run on a synthetic source) are tabulated by their
training's validation loss, else their final training loss, labelled as such (lower is better).
"""

from __future__ import annotations

import argparse
import json
import sys


def _key_value(text: str, flag: str) -> tuple[str, str]:
    from scaling.config.base import ConfigError

    if "=" not in text or not text.split("=", 1)[0].strip() or not text.split("=", 1)[1].strip():
        raise ConfigError(f"{flag} {text!r} is not of the form KEY=VALUE (e.g. {flag} {'A100=400' if flag == '--tdp' else 'audiocaps=SPIDEr'})")
    key, value = text.split("=", 1)
    return key.strip(), value.strip()


def default_out(inputs: list[str]) -> str:
    """``INPUT/report`` for one input (a sweep or run folder), else ``COMMON_PARENT/report``: next to what it
    reports on, never into the current folder."""
    import os

    paths = [os.path.abspath(p) for p in inputs]
    base = paths[0] if len(paths) == 1 else os.path.commonpath(paths)
    return os.path.join(base, "report")


def register(subparsers) -> None:
    from scaling.evaluation.report import DEFAULT_CARBON_INTENSITY, DEFAULT_PUE, DEFAULT_TDP_W

    p = subparsers.add_parser(
        "report",
        help="aggregate run directories: mean ± std over seeds, best grid point, ranks, training time, carbon",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("runs", nargs="+", metavar="RUN_DIR", help="run directories, or directories holding them (a sweep)")
    p.add_argument("--out", default=None, metavar="DIR",
                   help="where report.md, report.csv and charts go (default: INPUT/report beside the runs, for several "
                        "inputs their common folder's report/)")
    p.add_argument("--json", action="store_true", help="print the report as one JSON object on the last line")
    p.add_argument(
        "--metric",
        action="append",
        default=[],
        metavar="DATASET_OR_TASK=METRIC",
        help="metric a benchmark is ranked by (default: caption CIDEr, QA accuracy), e.g. audiocaps=SPIDEr",
    )
    tdp = ", ".join(f"{k}={v:g}" for k, v in DEFAULT_TDP_W.items())
    p.add_argument("--tdp", action="append", default=[], metavar="GPU=WATTS", help=f"GPU TDP (defaults: {tdp})")
    p.add_argument("--pue", type=float, default=DEFAULT_PUE, help=f"power usage effectiveness (default {DEFAULT_PUE:g})")
    p.add_argument(
        "--carbon-intensity",
        type=float,
        default=DEFAULT_CARBON_INTENSITY,
        help=f"kg CO2eq per kWh (default {DEFAULT_CARBON_INTENSITY:g}, the DePALM paper's)",
    )
    p.add_argument("--split", default="test",
                   help="whose `scaling eval` scores to report (RUN/best/eval_SPLIT, else the newest RUN/eval/step_N_SPLIT; "
                        "without them the training's val-subset metrics.json, with a warning); default test")
    p.add_argument("--ddof", type=int, default=1, choices=(0, 1), help="std over seeds: 1 = sample std (default), 0 = population")
    p.add_argument("--no-charts", action="store_true", help="skip the PNG charts")
    p.add_argument("--no-html", action="store_true",
                   help="skip index.html (the page with learning curves and a gallery of test predictions)")
    p.add_argument("--no-media", action="store_true",
                   help="index.html without media previews (no shard is read; faster for large test sets)")
    p.set_defaults(func=run)


def run(args) -> int:
    from scaling.config.base import ConfigError
    from scaling.evaluation.report import CarbonSettings, build_report, to_json, to_markdown, write_report

    settings = CarbonSettings(pue=args.pue, carbon_intensity=args.carbon_intensity)
    for item in args.tdp:
        gpu, watts = _key_value(item, "--tdp")
        try:
            watts_f = float(watts)
        except ValueError:
            raise ConfigError(f"--tdp {item!r}: {watts!r} is not a number of watts") from None
        for known in [k for k in settings.tdp_w if k.upper() == gpu.upper()]:
            del settings.tdp_w[known]
        settings.tdp_w[gpu] = watts_f
    if args.pue <= 0 or args.carbon_intensity < 0:
        raise ConfigError("--pue must be > 0 and --carbon-intensity >= 0")
    metrics = dict(_key_value(item, "--metric") for item in args.metric)

    report = build_report(
        args.runs,
        metric_overrides=metrics,
        settings=settings,
        ddof=args.ddof,
        warn=lambda msg: print(f"warning: {msg}", file=sys.stderr),
        split=args.split,
    )
    out_dir = args.out or default_out(args.runs)
    outputs = write_report(report, out_dir, charts=not args.no_charts)
    if not args.no_html:
        from scaling.evaluation.html_report import write_html_report

        outputs["html"] = write_html_report(report, out_dir, split=args.split, media=not args.no_media,
                                            warn=lambda msg: print(f"warning: {msg}", file=sys.stderr))
    if args.json:
        data = to_json(report)
        data["outputs"] = outputs
        print(json.dumps(data, default=str))
    else:
        print(to_markdown(report, warnings_section=False))  # the warnings went to stderr; the file keeps them
        print(f"wrote {outputs['markdown']}, {outputs['csv']}" + (f" and {len(outputs['charts'])} charts" if outputs["charts"] else ""))
        if outputs.get("html"):
            print(f"open {outputs['html']} in a browser: scores, learning curves and every test prediction")
    return 0
