"""`scaling eval`: generate for every sample of a split (batched, KV cache, all ranks) and score it.

Single process: ``scaling eval --checkpoint RUN_OR_ADAPTER --data 'shards/coco/test-{000000..000004}.tar'``.
Many GPUs: the same command under ``torchrun``/``srun``; each rank reads its share of the shards and
the predictions are gathered (every sample exactly once). Zero-shot / out-of-distribution: evaluate a
VQAv2 checkpoint on GQA shards with ``--task gqa``.
"""

from __future__ import annotations

import json
import os
import re
import sys

from scaling.config.base import ConfigError
from scaling.config.tasks import TASK_NAMES as TASKS


def register(sub) -> None:
    p = sub.add_parser("eval", help="generate + score a split with the paper metrics (batched, sharded across ranks)")
    p.add_argument("--checkpoint", required=True, help="a run directory, a checkpoint directory, or an adapter .safetensors")
    p.add_argument("--data", help="webdataset shards of the split (default: the data.val/data.test of the checkpoint's config)")
    p.add_argument("--split", default="test", choices=["val", "test", "train"])
    p.add_argument("--task", choices=TASKS, help="metric family (default: the checkpoint's data.task); another task = zero-shot / OOD")
    p.add_argument("--out", help="output directory for predictions.jsonl and metrics.json (default: RUN/eval/step_N_SPLIT for a checkpoint of a run "
                        "directory, which checkpoint pruning never deletes; else CHECKPOINT_DIR/eval_SPLIT)")
    p.add_argument("--batch-size", type=int)
    p.add_argument("--max-new-tokens", type=int)
    p.add_argument("--num-beams", type=int)
    p.add_argument("--limit", type=int, help="evaluate only the first N samples")
    p.add_argument("--llm", help="the LLM directory, if it moved since training (fingerprints are checked)")
    p.add_argument("--encoder", help="the encoder directory, if it moved since training")
    p.add_argument("--trust-remote-code", action="store_true",
                   help="run the backbones' own Python code (auto_map); never taken from the checkpoint's stored config")
    p.add_argument("--no-meteor", action="store_true", help="skip METEOR (its Java start is slow)")
    p.add_argument("--json", action="store_true", help="print the metrics as one JSON line")
    p.add_argument("overrides", nargs="*", help="config overrides, e.g. data.num_workers=4 model.frozen_dtype=fp16")
    p.set_defaults(func=run)


def run(args) -> int:
    import torch
    import transformers

    from scaling.config.stored import executes, stored_pipe_source
    from scaling.data.sources import source_for
    from scaling.evaluation.evaluate import evaluate, write_metrics, write_predictions
    from scaling.evaluation.metrics import MetricsError, format_table
    from scaling.evaluation.partial import PartialPredictions, remove_partials
    from scaling.training import distributed
    from scaling.training.checkpoint import load_adapter, read_adapter, resolve_adapter_path
    from scaling.training.loaders import build_loader, generation_tokenizer

    transformers.utils.logging.set_verbosity_error()
    env = distributed.read_env()
    device = distributed.pick_device(env)
    distributed.init(env, device)
    adapter = resolve_adapter_path(args.checkpoint)
    _, meta = read_adapter(adapter)
    stored = meta.get("config") or {}
    task = args.task or (stored.get("data") or {}).get("task")
    if task not in TASKS:
        raise ConfigError(f"checkpoint {args.checkpoint} records no task ({task!r}); pass --task {{{','.join(TASKS)}}}")
    overrides = list(args.overrides) + [f"data.task={task}"]
    pipe = stored_pipe_source(stored, args.split)
    if pipe and not args.data and not any(o.startswith(f"data.{args.split}=") for o in args.overrides):
        raise ConfigError(f"the checkpoint's stored config has data.{args.split}={pipe!r}, a shell command, which a "
                          f"stored config cannot run; pass the data yourself: --data SHARDS (or --data '{pipe}' if you "
                          f"trust that command)")
    if args.data:
        overrides.append(f"data.{args.split}={args.data}")
        if executes(args.data):  # the user's own --data argument: its pipe: command may run
            overrides.append("data.allow_pipe=true")
    for flag, key in (("batch_size", "eval.batch_size"), ("max_new_tokens", "eval.max_new_tokens"), ("num_beams", "eval.num_beams")):
        if getattr(args, flag) is not None:
            overrides.append(f"{key}={getattr(args, flag)}")
    model, cfg = load_adapter(adapter, device, llm=args.llm, encoder=args.encoder, overrides=overrides,
                              trust_remote_code=args.trust_remote_code)
    if getattr(cfg.data, args.split, None) is None:
        given = [s for s in ("train", "val", "test") if getattr(cfg.data, s, None)]
        raise ConfigError(f"no data for split {args.split!r}: pass --data SHARDS"
                          + (f" (or --split {given[-1]}: the run has data.{given[-1]})" if given else ""))
    source = source_for(getattr(cfg.data, args.split))
    if source is not None and not source.references:
        raise ConfigError(f"data.{args.split}={getattr(cfg.data, args.split)} is {source.about}: it has no "
                          f"references to score generations against; pass --data SHARDS")
    tokenizer = generation_tokenizer(cfg.model.llm, "evaluation", cfg.model.trust_remote_code)
    loader = build_loader(cfg, tokenizer, args.split, env.rank, env.world_size, train=False, limit=args.limit)
    half = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[cfg.model.frozen_dtype]
    metric_options = {"meteor": not args.no_meteor} if task == "caption" else {}
    stored_data = stored.get("data") or {}
    out = args.out or default_out_dir(adapter, args.split, out_dir_qualifiers(
        task, stored_data.get("task"), args.data, stored_data.get(args.split), args.limit, args.split))
    pred_path = os.path.join(out, "predictions.jsonl")
    check_unique_ids(cfg, args.split)
    # each batch's predictions are kept as they are made (an interrupted evaluation resumes from them), and all of
    # them are written before scoring: a scoring failure loses no generation
    header = {"checkpoint": os.path.abspath(adapter), "adapter": _stat(adapter), "split": args.split, "task": task,
              "data": getattr(cfg.data, args.split), "limit": args.limit, "generation": cfg.eval.generation()}
    partial = PartialPredictions(out, env.rank, header)
    if partial.done and env.is_main:
        print(f"resuming an interrupted evaluation: {len(partial.done)} predictions already made in {out}",
              file=sys.stderr)
    try:
        result = evaluate(model, tokenizer, loader, task, **cfg.eval.generation(),
                          media_dtype=half if device.type == "cuda" else None, partial=partial,
                          save_predictions=lambda p, r: write_predictions(p, r, out), **metric_options)
    except (MetricsError, ConfigError) as err:
        partial.close()
        if env.is_main and os.path.isfile(pred_path):
            remove_partials(out)
            raise (MetricsError if isinstance(err, MetricsError) else ConfigError)(f"{err}\nThe predictions are saved: {pred_path}; once fixed, score them with "
                            f"`scaling score --task {task} --predictions {pred_path} --references {pred_path}`") from None
        raise
    partial.close()
    if env.is_main:
        remove_partials(out)
    if env.is_main:
        metrics_path = write_metrics(result, out, {"checkpoint": os.path.abspath(adapter), "split": args.split,
                                                   "data": getattr(cfg.data, args.split), "limit": args.limit})
        if args.json:
            print(json.dumps({"task": task, **result.counts(), "metrics": result.metrics}))
        else:
            print(format_table(task, result.metrics, len(result.predictions)))
            print(f"{len(result.predictions)} samples · predictions: {pred_path} · metrics: {metrics_path}")
            from scaling.cli.summary import eval_next

            print(eval_next(args.checkpoint, run_dir_of(adapter)))
        if result.skip_warning():
            print(f"WARNING: {result.skip_warning()}", file=sys.stderr)
    distributed.shutdown()
    return 0


def _stat(path: str) -> list:
    st = os.stat(path)
    return [st.st_size, st.st_mtime_ns]


def check_unique_ids(cfg, split: str) -> None:
    """Refuse, before generating, a split whose index lists a sample id twice (a score needs one prediction per id);
    shards without per-sample ids in their index are not read for this (the evaluation reports them at the end)."""
    from collections import Counter

    from scaling.data.shards import resolve_split

    source = getattr(cfg.data, split)
    try:
        src = resolve_split(source, split, cfg.data.index, need_ids=True, allow_pipe=cfg.data.allow_pipe, scan=False)
    except ConfigError:
        return  # the loader reports it
    counts = Counter(i for sh in src.shards for i in (sh.ids or []))
    dups = sorted(i for i, n in counts.items() if n > 1)
    if dups:
        raise ConfigError(f"data.{split}={source!r}: {len(dups)} sample id(s) appear more than once in its index "
                          f"(e.g. {dups[:5]}): a score needs one prediction per id; give each sample its own id "
                          f"(re-convert the data; `scaling data inspect` shows the ids). Nothing was generated")


def same_shards(a: str, b: str, split: str) -> bool:
    """Do two data sources name the same shard files (a folder with index.json and the URL pattern of its
    shards, relative and absolute paths)? False when either cannot be resolved."""
    from scaling.data.shards import INDEX_NAME, expand_urls, is_local, local_path, read_json

    def files(source: str) -> set[str]:  # names only: no shard is opened or counted
        out = set()
        for part in [p.strip() for p in str(source).split("::") if p.strip()]:
            ref, _, sub = part.partition("#")
            if ref.endswith(".json") or (is_local(ref) and os.path.isdir(local_path(ref))):
                path = os.path.join(local_path(ref), INDEX_NAME) if os.path.isdir(local_path(ref)) else ref
                entry = read_json(path, "index")["splits"][sub or split]
                urls = [os.path.join(os.path.dirname(path), sh["name"]) for sh in entry["shards"]]
            else:
                urls = expand_urls(ref)
            out.update(os.path.realpath(local_path(u)) if is_local(u) else u for u in urls)
        return out

    try:
        return files(a) == files(b)
    except Exception:  # noqa: BLE001 - any failure to resolve: treat as other data (its own folder)
        return False


def out_dir_qualifiers(task: str, run_task: str | None, data: str | None, run_data: str | None,
                       limit: int | None, split: str = "test") -> list[str]:
    """What sets an evaluation apart from the run's own full split, for its folder name: another task
    (zero-shot), other data than the run's ``data.SPLIT``, a ``--limit``. Empty for the paper's figure."""
    parts = []
    if run_task and task != run_task:
        parts.append(task)
    if data and run_data and data != run_data and not same_shards(data, run_data, split):
        names = [p for p in re.split(r"[/#]", data.rstrip("/")) if p and not re.search(r"[{}*?\[\]]", p)]
        parts.append(re.sub(r"[^A-Za-z0-9._-]+", "-", names[-1] if names else "data"))
    if limit:
        parts.append(f"limit{limit}")
    return parts


def run_dir_of(adapter: str) -> str | None:
    """The run folder of ``RUN/checkpoints/step_N/…`` or ``RUN/best/…`` (None for a loose adapter)."""
    ckpt_dir = os.path.dirname(os.path.realpath(adapter))
    parent = os.path.dirname(ckpt_dir)
    if os.path.basename(parent) == "checkpoints":
        return os.path.dirname(parent)
    if os.path.basename(ckpt_dir) == "best" and os.path.isfile(os.path.join(parent, "config.yaml")):
        return parent
    return None


def default_out_dir(adapter: str, split: str, qualifiers: list[str] = ()) -> str:
    """``RUN/eval/step_N_SPLIT`` for ``RUN/checkpoints/step_N/adapter.safetensors`` (``latest`` resolved):
    outside the checkpoint, which ``train.keep_last`` may prune while training goes on; otherwise
    ``CHECKPOINT_DIR/eval_SPLIT``. ``qualifiers`` (:func:`out_dir_qualifiers`) are appended, so that a
    zero-shot, other-data or ``--limit`` evaluation never overwrites the split's own scores (which
    ``scaling report`` reads)."""
    name = "_".join([split, *qualifiers])
    ckpt_dir = os.path.dirname(os.path.realpath(adapter))
    parent = os.path.dirname(ckpt_dir)
    if os.path.basename(parent) == "checkpoints":
        return os.path.join(os.path.dirname(parent), "eval", f"{os.path.basename(ckpt_dir)}_{name}")
    if os.path.basename(ckpt_dir) == "best":  # RUN/best/eval_SPLIT, which `scaling report` reads
        return os.path.join(ckpt_dir, f"eval_{name}")
    step = _adapter_step(adapter)  # a loose adapter: its folder name says which weights were scored
    stem = os.path.splitext(os.path.basename(adapter))[0]
    return os.path.join(ckpt_dir, f"eval_{stem}_step_{step}_{name}" if step is not None else f"eval_{stem}_{name}")


def _adapter_step(adapter: str) -> int | None:
    from scaling.training.checkpoint import read_adapter_meta

    try:
        step = read_adapter_meta(adapter).get("step")
    except Exception:  # noqa: BLE001 - an unreadable adapter is reported when it is loaded
        return None
    return step if isinstance(step, int) else None
