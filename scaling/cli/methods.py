"""`scaling methods`: list every method preset with its trainable-parameter count, or show one.

Backbones are given as local directories, hub ids or shape names (``llama-7b``, ``clip-vit-l14``...);
models are built on ``meta`` tensors, so counting at 7B scale needs no memory and no weights. The counts
are cached per backbone pair (``scaling/models/param_cache.py``): a second listing imports neither torch
nor transformers.
"""

from __future__ import annotations

import json
import sys

import yaml

from scaling.config.base import ConfigError, suggest, to_dict


def register(sub) -> None:
    p = sub.add_parser("methods", help="list method presets with trainable-parameter counts; --show NAME for one")
    p.add_argument("--llm", default="llama-7b", help="LLM: local directory, hub id, or shape name (default llama-7b)")
    from scaling.models.encoders.registry import PREFIXES

    p.add_argument("--encoder", default="clip-vit-l14", help="encoder: local directory, hub id, shape name (default clip-vit-l14), or "
                   f"{' / '.join(p + ':NAME' for p in PREFIXES)} (real shape, no weights; docs/backbones.md)")
    p.add_argument("--show", metavar="METHOD", help="print the resolved configuration of one method")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--no-cache", action="store_true",
                   help="count by building every preset even when the counts of this backbone pair are cached "
                        "(~/.cache/scaling/param_counts.json, keyed by the configs and this package's model code)")
    p.add_argument("overrides", nargs="*", help="model overrides applied to every preset, e.g. map.n_queries=16")
    p.set_defaults(func=run)


def _count(method: str, llm: str, encoder: str, overrides: list[str], cache=None) -> tuple[int, dict]:
    """(trainable parameters, {"config", "parameters"}) of one preset: from the cache of counts per backbone
    pair (scaling/models/param_cache.py), else by building it on the meta device."""
    from scaling.models import param_cache

    k = param_cache.key(method, llm, encoder, overrides)
    hit = cache.get(k) if cache is not None else None
    if hit is not None:
        return hit["trainable"], hit["info"]
    import transformers

    from scaling.config.base import apply_overrides
    from scaling.config.model import model_config
    from scaling.models.builder import build_model, count_trainable, parameter_table

    transformers.utils.logging.set_verbosity_error()
    data = apply_overrides({"method": method, "llm": llm, "encoder": encoder}, overrides)
    cfg = model_config(data)
    model = build_model(cfg, meta=True)
    table = {k: {"trainable": t, "frozen": f} for k, (t, f) in parameter_table(model).items()}
    info = {"config": to_dict(cfg), "parameters": table}
    n = count_trainable(model)
    if cache is not None:
        cache.put(k, {"trainable": n, "info": info})
    return n, info


def run(args) -> int:
    from scaling.models.param_cache import CountCache

    cache = CountCache(enabled=not args.no_cache)
    try:
        return _run(args, cache)
    finally:
        cache.save()


def _run(args, cache) -> int:
    from scaling.config.methods import METHODS, PAPER_TABLE1_PARAMS

    if args.show:
        if args.show not in METHODS:
            raise ConfigError(f"unknown method {args.show!r}{suggest(args.show, METHODS)}; valid: {sorted(METHODS)}")
        n, info = _count(args.show, args.llm, args.encoder, args.overrides, cache)
        info["trainable_parameters"] = n
        if args.json:
            print(json.dumps(info))
        else:
            print(f"# {args.show}: {METHODS[args.show]['about']}")
            print(f"# trainable parameters with {args.llm} + {args.encoder}: {n:,}")
            for comp, c in info["parameters"].items():
                print(f"#   {comp:12s} trainable {c['trainable']:>14,d}   frozen {c['frozen']:>16,d}")
            print(yaml.safe_dump({"model": info["config"]}, sort_keys=False), end="")
        return 0
    from scaling.models import param_cache

    pending = [name for name in METHODS
               if not (cache.enabled and param_cache.key(name, args.llm, args.encoder, args.overrides) in cache.entries)]
    progress = None
    if pending:
        from tqdm import tqdm

        print(f"counting {len(pending)} presets for LLM={args.llm}, encoder={args.encoder} on the meta device (no "
              f"weights are read): the first listing of a backbone pair takes a while (minutes on a busy machine); "
              f"the counts are cached afterwards", file=sys.stderr, flush=True)
        progress = tqdm(total=len(pending), desc="counting presets", unit="preset", file=sys.stderr,
                        disable=not sys.stderr.isatty())
    rows = []
    for name, preset in METHODS.items():
        if progress is not None and name in pending:
            progress.set_postfix_str(name)
        n, _ = _count(name, args.llm, args.encoder, args.overrides, cache)
        if progress is not None and name in pending:
            progress.update(1)
        rows.append({"method": name, "trainable_parameters": n, "about": preset["about"],
                     "paper_table1": PAPER_TABLE1_PARAMS.get(name)})
    if progress is not None:
        progress.close()
    if args.json:
        print(json.dumps({"llm": args.llm, "encoder": args.encoder, "methods": rows}))
        return 0
    print(f"Method presets with LLM={args.llm}, encoder={args.encoder} (trainable parameters)\n")
    print(f"{'method':20s} {'trainable':>14s}  description")
    for r in rows:
        print(f"{r['method']:20s} {r['trainable_parameters']:>14,d}  {r['about']}")
    print("\n`scaling methods --show NAME` prints a preset's resolved configuration.")
    return 0
