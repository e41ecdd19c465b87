"""``scaling demo``: the whole method on a laptop CPU, offline, in minutes.

Phases (each prints what it does; long ones have tqdm bars with ETA):

1. **data + backbones** (cached): render the synthetic dataset (:mod:`scaling.demo.synth`) and write it
   as webdataset shards through the public ``jsonl`` converter (``scaling data convert jsonl``);
   in parallel, pretrain the unimodal backbones (:mod:`scaling.demo.backbones`): a tiny ViT on an
   image-only task, a tiny LLaMA on text only (and a tiny AST on audio), saved with ``save_pretrained``;
2. **features** (cached): run each frozen encoder once over the shards (``scaling data
   cache-features``, :func:`scaling.data.features.cache_features`);
3. **adapters**: train every method on every task with the real trainer
   (:func:`scaling.training.loop.train`, a step budget, TensorBoard logs) and evaluate it at its
   last step on the held-out test split (:func:`scaling.evaluation.evaluate.evaluate`: batched
   generation + the paper metrics, CIDEr / VQA accuracy);
4. **report**: the results table against the blind baseline (the same frozen LM with prompt tuning
   and no perception), example predictions, a PNG grid of test images with their generated
   captions, a TensorBoard summary run, ``results.json``; ``--json`` prints the table as JSON last.

The 2-core CPU is used as two single-threaded worker processes (:mod:`scaling.demo.progress`
explains why). The cache (``~/.cache/scaling/demo`` or ``--cache-dir``) holds the dataset, the
backbones and the features, keyed by the settings that made them (:mod:`scaling.demo.cache`); a
second run only trains and evaluates the adapters. ``--fresh`` rebuilds the cached artefacts.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import sys
import time
from typing import Any

from scaling.demo import cache as cache_mod
from scaling.demo import synth

# ------------------------------------------------------------------------------------- settings


@dataclasses.dataclass
class Settings:
    """Sizes and step budgets (a step budget keeps the results reproducible)."""

    n_train: int = 3000  # images (one caption sample and `questions_per_image` questions each)
    n_test: int = 300
    questions_per_image: int = 2
    audio: bool = True
    n_audio_train: int = 2000
    n_audio_test: int = 200
    encoder_steps: int = 1500  # shapes are learnt late: per-patch shape accuracy 0.43 at 600 steps, 0.74 at 1500
    encoder_pool: int = 4000
    lm_steps: int = 500
    lm_batch: int = 32
    audio_steps: int = 400
    audio_pool: int = 2000
    # adapter training: steps per task for the methods, and for the blind baseline
    steps: dict = dataclasses.field(default_factory=lambda: {"caption": 400, "vqa": 400, "audio": 300})
    blind_steps: dict = dataclasses.field(default_factory=lambda: {"caption": 150, "vqa": 150, "audio": 100})
    batch: int = 64
    lr: float = 1e-3
    meteor: bool = False  # METEOR's Java start costs ~10 s per evaluation; `scaling eval` computes it
    workers: int = 2

    def data_spec(self, seed: int) -> dict:
        return {"n_train": self.n_train, "n_test": self.n_test, "q": self.questions_per_image, "seed": seed,
                "audio": [self.n_audio_train, self.n_audio_test] if self.audio else None}


FULL = Settings()
QUICK = Settings(
    n_train=1200, n_test=150, audio=False, encoder_steps=800, encoder_pool=2000, lm_steps=200,
    steps={"caption": 200, "vqa": 300, "audio": 150}, blind_steps={"caption": 50, "vqa": 50, "audio": 50},
)

TASKS = {  # task name → (dataset jsonl key, metric task, encoder kind, metrics shown)
    "caption": ("caption", "caption", "image", ("CIDEr", "BLEU-4", "ROUGE-L")),
    "vqa": ("vqa", "vqa", "image", ("accuracy",)),
    "audio": ("audio", "caption", "audio", ("CIDEr", "BLEU-4", "ROUGE-L")),
}
HEADLINE = {"caption": "CIDEr", "vqa": "accuracy", "audio": "CIDEr"}
BLIND = "blind"
MAX_NEW_TOKENS = {"caption": 20, "vqa": 4, "audio": 20}


def base_config(llm: str, encoder: str, method: str, task: str, settings: Settings, seed: int, out_dir: str,
                train_source: str, test_source: str, features: str | None) -> dict:
    """The demo's experiment config (the same sections as ``configs/*.yaml``)."""
    steps = (settings.blind_steps if method == BLIND else settings.steps)[task]
    model: dict[str, Any] = {"method": method, "llm": llm, "encoder": encoder, "frozen_dtype": "fp32"}
    model.update(method_overrides(method))
    return {
        "model": model,
        "data": {
            "name": f"demo-{task}", "task": TASKS[task][1], "train": train_source, "test": test_source,
            "use_features": features is not None, "features": features, "num_workers": 0, "augment": False,
            "hflip": 0.0, "randaugment_n": 0, "crop_scale": [1.0, 1.0], "max_text_len": 40, "shuffle_buffer": 500,
            # the toy LM was pretrained on "question </a> answer" documents (scaling/demo/synth.py)
            **({"prompt_template": "{question}</a>"} if TASKS[task][1] == "vqa" else {}),
        },
        "train": {
            "output_dir": out_dir, "seed": seed, "lr": settings.lr, "weight_decay": 0.01, "warmup_fraction": 0.05,
            # the toy recipe, not the papers' (docs/fidelity.md): AdamW eps 1e-8, no decay on 1-D parameters,
            # one schedule step per optimizer step
            "adam_eps": 1e-8, "decay_1d": False, "schedule_unit": "optimizer_step",
            "min_lr_ratio": 0.05, "clip": 1.0, "global_batch": settings.batch, "micro_batch": settings.batch,
            "max_steps": steps, "precision": "fp32", "save_every": 100000, "keep_last": 1, "log_every": 10,
            "resume": "never", "device": "cpu", "tensorboard": True, "progress_bar": False, "log_samples": 0,
        },
        "eval": {"batch_size": 100, "max_new_tokens": MAX_NEW_TOKENS[task], "num_beams": 1, "subset": None,
                 "stop_strings": ["\n"]},  # greedy, cut at a newline: the toy LM's documents are one line
    }


def method_overrides(method: str, enc_layers: int = 3, llm_layers: int = 2) -> dict:
    """Scale a preset to the tiny backbones (widths of 1024 → 128, levels ≤ encoder layers, injected
    layers ≤ LM layers); everything else stays the preset's."""
    from scaling.config.methods import METHODS

    if method not in METHODS:
        from scaling.config.base import ConfigError, suggest

        raise ConfigError(f"unknown method {method!r}{suggest(method, METHODS)}; valid: {sorted(METHODS)}")
    p = METHODS[method]
    out: dict[str, Any] = {}
    m = {k: v for k, v in p["map"].items() if k != "name"}
    mo = {}
    if "d_embed" in m:
        mo["d_embed"] = 128
    if "n_queries" in m:
        mo["n_queries"] = 16
    if mo:
        out["map"] = mo
    ex = p.get("extract", {})
    if ex.get("n_levels", 1) > enc_layers:
        out["extract"] = {"n_levels": enc_layers}
    inj = {k: v for k, v in p["inject"].items() if k != "name"}
    io = {}
    if "n_llm_layers" in inj:
        io["n_llm_layers"] = llm_layers
    if "n_left" in inj:
        io["n_left"] = 0
    if io:
        out["inject"] = io
    ft = p.get("finetune", {})
    if ft.get("n_prompt", 0) > 10:
        out["finetune"] = {"n_prompt": 10}
    return out


def method_override_args(method: str, enc_layers: int = 3, llm_layers: int = 2) -> list[str]:
    """:func:`method_overrides` as command-line ``model.KEY=VALUE`` overrides (what configs/demo_caption.yaml's
    header lists for each preset on the running example's tiny backbones)."""
    def flat(d: dict, prefix: str) -> list[str]:
        out = []
        for key, value in d.items():
            out += flat(value, f"{prefix}.{key}") if isinstance(value, dict) else [f"{prefix}.{key}={value}"]
        return out

    return flat(method_overrides(method, enc_layers, llm_layers), "model")


# ------------------------------------------------------------------------------------- jobs
# Module-level functions: they run in worker processes (see scaling.demo.progress.JobRunner).


def job_data(reporter, spec: dict, cache_dir: str, fresh: bool) -> dict:
    def build(tmp: str) -> dict:
        from scaling.data.converters import convert

        t0 = time.time()
        sizes = {"train": spec["n_train"], "test": spec["n_test"]}
        audio_sizes = {"train": spec["audio"][0], "test": spec["audio"][1]} if spec["audio"] else None
        bar = reporter.bar(sum(sizes.values()) + sum((audio_sizes or {}).values()), "rendering the dataset", "item")
        paths = synth.write_dataset(tmp, sizes, spec["seed"], spec["q"], audio_sizes, progress=False,
                                    on_item=lambda: bar.update(1))
        bar.close()
        t_render = time.time() - t0
        summary = {}
        for key, path in paths.items():
            reporter.echo(f"  converting {os.path.basename(path)} → shards/{key} (scaling data convert jsonl)")
            summary[key] = convert("jsonl", os.path.join(tmp, "shards", key, "{split}-%06d.tar"), annotations=path,
                                   media=tmp, modality="audio" if key == "audio" else "image", samples_per_shard=2000,
                                   seed=spec["seed"], progress=False, echo=lambda m: None)
        return {"render_seconds": round(t_render, 2), "convert_seconds": round(time.time() - t0 - t_render, 2),
                "splits": {k: {s: v["num_samples"] for s, v in d.items()} for k, d in summary.items()}}

    path, reused, info = cache_mod.build_or_reuse(cache_dir, "data", spec, build, fresh)
    return {"path": path, "reused": reused, "info": info}


def job_pretrain(reporter, kind: str, spec: dict, cache_dir: str, fresh: bool) -> dict:
    from scaling.demo import backbones

    def build(tmp: str) -> dict:
        echo = reporter.echo
        if kind == "vit":
            r = backbones.pretrain_image_encoder(tmp, steps=spec["steps"], pool=spec["pool"], seed=spec["seed"], echo=echo,
                                                 reporter=reporter)
        elif kind == "ast":
            r = backbones.pretrain_audio_encoder(tmp, steps=spec["steps"], pool=spec["pool"], seed=spec["seed"], echo=echo,
                                                 reporter=reporter)
        else:
            r = backbones.pretrain_lm(tmp, steps=spec["steps"], batch=spec["batch"], seed=spec["seed"], audio=True,
                                      echo=echo, reporter=reporter)
        return {"steps": r.steps, "seconds": round(r.seconds, 2), **r.metrics}

    path, reused, info = cache_mod.build_or_reuse(cache_dir, kind, spec, build, fresh)
    return {"path": path, "reused": reused, "info": info}


def job_features(reporter, spec: dict, cfg_dict: dict, cache_dir: str, fresh: bool) -> dict:
    def build(tmp: str) -> dict:
        from scaling.config import config_from_dict
        from scaling.data.features import cache_features
        from scaling.models.transforms import build_extractor

        cfg = config_from_dict(cfg_dict)
        bar = reporter.bar(1, f"caching {spec['task']} features", "split")
        extractor, encoder = build_extractor(cfg.model, "cpu", cfg.data)
        out = cache_features(cfg, tmp, extractor, encoder, ["train", "test"], views=1, batch_size=128, num_workers=0,
                             progress=False, echo=lambda m: None)
        bar.update(1)
        bar.close()
        return {"splits": {k: v["num_samples"] for k, v in out.items()}}

    path, reused, info = cache_mod.build_or_reuse(cache_dir, "features", spec, build, fresh)
    return {"path": path, "reused": reused, "info": info}


def job_train(reporter, name: str, cfg_dict: dict, eval_task: str, meteor: bool) -> dict:
    """Train one method on one task with the project's trainer; evaluate on the test split at the end."""
    import torch

    from scaling.config import config_from_dict
    from scaling.evaluation.evaluate import evaluate, write_results
    from scaling.training import loaders
    from scaling.training.loaders import build_loader
    from scaling.training.loop import train

    cfg = config_from_dict(cfg_dict)
    out_dir = cfg.train.output_dir
    shutil.rmtree(out_dir, ignore_errors=True)
    os.makedirs(out_dir, exist_ok=True)
    captured: dict[str, Any] = {}
    bar = reporter.bar(cfg.train.max_steps, f"training {name}", "step")

    def on_step(step: int, info: dict) -> None:
        if info.get("loss") is not None:
            bar.set_postfix(loss=f"{info['loss']:.3f}")
        bar.update(1)

    def evaluate_fn(model, step: int) -> dict:
        tok = loaders.load_tokenizer(cfg.model.llm, cfg.model.trust_remote_code)
        batches = build_loader(cfg, tok, "test", 0, 1, train=False)
        ebar = reporter.bar(len(batches), f"evaluating {name}", "batch")

        def gen():
            for b in batches:
                yield b
                ebar.update(1)

        t0 = time.time()
        opts = {"meteor": meteor} if eval_task == "caption" else {}
        res = evaluate(model, tok, gen(), eval_task, **cfg.eval.generation(), progress=False, **opts)
        ebar.close()
        # where `scaling eval` puts a checkpoint's test scores, so `scaling report RUNS` reads them
        write_results(res, os.path.join(out_dir, "eval", f"step_{step}_test"),
                      {"method": cfg.model.method, "step": step, "split": "test", "data": cfg.data.test})
        captured.update(predictions=res.predictions, references=res.references, metrics=res.metrics,
                        eval_seconds=time.time() - t0)
        return {k: v for k, v in res.metrics.items() if v is not None}

    t0 = time.time()
    torch.manual_seed(cfg.train.seed)
    result = train(cfg, evaluate_fn=evaluate_fn, on_step=on_step)
    bar.close()
    if result.exit_code != 0:
        raise RuntimeError(f"training {name} exited with code {result.exit_code}")
    return {"name": name, "seconds": time.time() - t0, "train_seconds": result.state.train_seconds,
            "steps": result.state.step, "final_loss": result.state.last_loss, **captured}


# ------------------------------------------------------------------------------------- orchestration


class Timer:
    def __init__(self):
        self.phases: dict[str, float] = {}
        self.t0 = time.time()

    def phase(self, name: str, seconds: float) -> None:
        self.phases[name] = round(seconds, 1)

    @property
    def total(self) -> float:
        return time.time() - self.t0


def run_demo(methods: list[str], settings: Settings, cache_dir: str, out_dir: str, seed: int = 0, fresh: bool = False,
             progress: bool = True, echo=None, result=None) -> dict:
    """Run every phase; returns ``{"results": method → metric → value, "timings": ..., ...}``.

    ``echo`` gets progress and logs (default: stderr), ``result`` the results table, the examples and where
    the outputs are (default: stdout)."""
    from scaling.demo.progress import JobRunner

    echo = echo or (lambda m: print(m, file=sys.stderr, flush=True))
    result = result or (lambda m: print(m, flush=True))
    timer = Timer()
    os.makedirs(cache_dir, exist_ok=True)
    os.makedirs(out_dir, exist_ok=True)
    cache_mod.clean_stale_tmp(cache_dir)
    if BLIND not in methods:
        methods = methods + [BLIND]
    for m in methods:
        method_overrides(m)  # unknown names fail before anything runs
    with JobRunner(workers=settings.workers, progress=progress, echo=echo) as runner:
        return _run_phases(runner, methods, settings, cache_dir, out_dir, seed, fresh, echo, timer, result)


def artefact_specs(settings: Settings, seed: int) -> dict[str, dict]:
    """The cache spec of each artefact (one key per artefact, whatever the entry point that builds it)."""
    return {
        "vit": {"steps": settings.encoder_steps, "pool": settings.encoder_pool, "seed": seed, "arch": "vit-128x3-p16",
                "recipe": "lr2e-3 patch-loss x2 + position"},
        "llm": {"steps": settings.lm_steps, "batch": settings.lm_batch, "seed": seed, "arch": "llama-128x2-ffn512",
                "vocab": synth.vocabulary(audio=True)},
        "data": settings.data_spec(seed),
        "ast": {"steps": settings.audio_steps, "pool": settings.audio_pool, "seed": seed, "arch": "ast-128x3-p8"},
    }


def build_data_and_backbones(runner, settings, cache_dir, out_dir, seed, fresh, echo,
                             reuse_from: tuple[Settings, ...] = ()) -> dict:
    """Phase 1: the dataset shards and the pretrained tiny backbones, from the cache or built (in parallel).
    ``reuse_from``: other settings whose finished artefacts are taken as they are when the cache has them (the
    export takes a full demo's backbones rather than building quick ones). Returns
    ``{"vit"|"llm"|"data"|"ast": {"path", "reused", "info"}}``."""
    specs = artefact_specs(settings, seed)
    names = ["vit", "llm", "data"] + (["ast"] if settings.audio else [])
    fns = {"vit": job_pretrain, "llm": job_pretrain, "ast": job_pretrain, "data": job_data}
    todo, built = [], {}
    for name in names:
        candidates = [specs[name]] + [artefact_specs(other, seed)[name] for other in reuse_from]
        ready = None if fresh else next(
            (spec for spec in candidates if cache_mod.is_ready(cache_mod.entry_path(cache_dir, name, spec), spec)), None)
        if ready is not None:
            path = cache_mod.entry_path(cache_dir, name, ready)
            built[name] = {"path": path, "reused": True, "info": cache_mod.read_info(path)}
            continue
        kw = {"spec": specs[name], "cache_dir": cache_dir, "fresh": fresh}
        if name != "data":
            kw["kind"] = name
        todo.append((name, fns[name], kw, os.path.join(out_dir, "logs", f"build-{name}.log")))
    what = {"vit": "image encoder (ViT)", "llm": "language model (LLaMA)", "data": "dataset shards", "ast": "audio encoder (AST)"}
    for name, value in built.items():
        echo(f"[1/4] reusing cached {what[name]}: {value['path']}")
    if todo:
        echo(f"[1/4] building {', '.join(what[n] for n, *_ in todo)} ({min(len(todo), max(1, settings.workers))} processes)")
        built.update(runner.run(todo, on_done=lambda n, v: echo(f"      done: {what[n]} ({v['info'].get('seconds', 0):.0f}s)")))
    return built


def _run_phases(runner, methods, settings, cache_dir, out_dir, seed, fresh, echo, timer, result) -> dict:
    tasks = ["caption", "vqa"] + (["audio"] if settings.audio else [])
    echo(f"scaling demo: methods {', '.join(methods)} on tasks {', '.join(tasks)}; cache {cache_dir}; output {out_dir}")

    # ---- phase 1: data + backbones (independent: run together)
    t = time.time()
    built = build_data_and_backbones(runner, settings, cache_dir, out_dir, seed, fresh, echo)
    timer.phase("data_and_backbones", time.time() - t)
    data_root, vit, llm = built["data"]["path"], built["vit"]["path"], built["llm"]["path"]
    ast = built.get("ast", {}).get("path")
    shards = os.path.join(data_root, "shards")

    # ---- phase 2: cached encoder features (one set per task and extraction signature)
    t = time.time()
    feature_jobs, feature_dirs, reused_features = [], {}, 0
    for task in tasks:
        encoder = ast if TASKS[task][2] == "audio" else vit
        source = os.path.join(shards, TASKS[task][0])
        for method in methods:
            if method == BLIND:
                continue
            cfg = _config(llm, encoder, method, task, settings, seed, "/tmp/unused", source, None)
            sig = _signature(cfg)
            key = (task, json.dumps(sig, sort_keys=True))
            if key in feature_dirs or any(k == key for k, *_ in feature_jobs):
                continue
            from scaling.config import to_dict

            spec = {"task": task, "data": os.path.basename(data_root), "encoder": os.path.basename(encoder), "signature": sig}
            path = cache_mod.entry_path(cache_dir, "features", spec)
            if not fresh and cache_mod.is_ready(path, spec):
                feature_dirs[key] = path
                reused_features += 1
                continue
            feature_jobs.append((key, spec, to_dict(cfg)))
    if reused_features:
        echo(f"[2/4] reusing {reused_features} cached feature set(s)")
    if feature_jobs:
        echo(f"[2/4] caching encoder features for {len(feature_jobs)} set(s) (scaling data cache-features)")
        named = {f"features-{i}": fj for i, fj in enumerate(feature_jobs)}
        res = runner.run([(n, job_features, {"spec": spec, "cfg_dict": cd, "cache_dir": cache_dir, "fresh": fresh},
                           os.path.join(out_dir, "logs", f"{n}.log")) for n, (key, spec, cd) in named.items()])
        for n, (key, _spec, _cd) in named.items():
            feature_dirs[key] = res[n]["path"]
    timer.phase("features", time.time() - t)

    # ---- phase 3: adapters
    t = time.time()
    train_jobs = []
    for method in methods:
        for task in tasks:
            encoder = ast if TASKS[task][2] == "audio" else vit
            source = os.path.join(shards, TASKS[task][0])
            run_dir = os.path.join(out_dir, "runs", f"{method}-{task}")
            if method == BLIND:
                cfg = _config(llm, encoder, method, task, settings, seed, run_dir, source, None)
            else:
                probe = _config(llm, encoder, method, task, settings, seed, run_dir, source, None)
                fdir = feature_dirs[(task, json.dumps(_signature(probe), sort_keys=True))]
                cfg = _config(llm, encoder, method, task, settings, seed, run_dir, source, fdir)
            from scaling.config import to_dict

            steps = cfg.train.max_steps
            train_jobs.append((steps, f"{method}-{task}", to_dict(cfg), TASKS[task][1]))
    train_jobs.sort(key=lambda j: -j[0])  # longest first
    n_steps = sum(j[0] for j in train_jobs)
    echo(f"[3/4] training {len(train_jobs)} adapters ({n_steps} steps in all, step budgets) with the trainer "
         f"(scaling.training.loop.train); runs and TensorBoard logs in {os.path.join(out_dir, 'runs')}")
    results_raw = runner.run(
        [(name, job_train, {"name": name, "cfg_dict": cd, "eval_task": et, "meteor": settings.meteor},
          os.path.join(out_dir, "runs", name + ".log")) for _, name, cd, et in train_jobs],
        on_done=lambda n, v: echo(f"      done: {n}: {_headline(n, v)} ({v['seconds']:.0f}s, final loss {v['final_loss']:.3f})"))
    timer.phase("adapters", time.time() - t)

    # ---- phase 4: report
    t = time.time()
    report = build_report(methods, tasks, results_raw, data_root, out_dir)
    timer.phase("report", time.time() - t)
    timings = dict(timer.phases, total=round(timer.total, 1))
    reused = {name: v["reused"] for name, v in built.items()}
    summary = {"results": report["table"], "timings": timings, "reused": reused, "reused_features": reused_features,
               "built_features": len(feature_jobs), "methods": methods, "tasks": tasks,
               "cache": {"data": data_root, "vit": vit, "llm": llm, "ast": ast},
               "grid": report["grid"], "tensorboard": report["tensorboard"],
               "pretraining": {k: v["info"] for k, v in built.items()},
               "jobs": {k: {kk: vv for kk, vv in v.items() if kk not in ("predictions", "references")}
                        for k, v in results_raw.items()}}
    with open(os.path.join(out_dir, "results.json"), "w") as fh:
        json.dump(summary, fh, indent=2, default=str)
    all_reused = all(reused.values()) and not feature_jobs
    echo("timings: " + ", ".join(f"{k} {v:.0f}s" for k, v in timings.items())
         + ("  (backbones, data and features reused from the cache)" if all_reused else ""))
    runs = os.path.join(out_dir, "runs")
    from scaling.demo.pages import serve_line, write_html_report

    html = write_html_report(runs, os.path.join(out_dir, "report"), echo)
    serve = serve_line(runs, methods, tasks)
    result(report["text"])
    result(f"\ngrid: {report['grid']}   results: {os.path.join(out_dir, 'results.json')}   "
           f"test predictions and scores: {os.path.join(runs, 'METHOD-TASK', 'eval')}/\n"
           + (f"HTML report (scores, learning curves, every test prediction beside its image or audio): {html}\n"
              if html else "")
           + "next:\n"
           + (f"  {serve}   # try the adapter in a browser: http://127.0.0.1:7860/\n" if serve else "")
           + f"  scaling report {runs}                  # the report's tables (and index.html) of these runs\n"
           f"  tensorboard --logdir {runs}")
    summary["html_report"] = html
    return summary


def _config(llm, encoder, method, task, settings, seed, run_dir, source, features):
    from scaling.config import config_from_dict

    return config_from_dict(base_config(llm, encoder, method, task, settings, seed, run_dir, source, source, features))


def _signature(cfg) -> dict:
    from scaling.data.features import feature_signature
    from scaling.models.transforms import encoder_inputs

    return feature_signature(cfg.model, encoder_inputs(cfg.model, cfg.data))


def _headline(name: str, value: dict) -> str:
    task = name.rsplit("-", 1)[1]
    metric = HEADLINE[task]
    v = (value.get("metrics") or {}).get(metric)
    return f"{metric} {v:.3f}" if isinstance(v, (int, float)) else f"{metric} n/a"


# ------------------------------------------------------------------------------------- report


def _column(task: str, metric: str) -> str:
    return f"{task}/{metric}"


def build_report(methods: list[str], tasks: list[str], raw: dict, data_root: str, out_dir: str) -> dict:
    from scaling.demo.grid import write_grid

    table: dict[str, dict[str, float | None]] = {}
    for m in methods:
        row = {}
        for task in tasks:
            res = raw.get(f"{m}-{task}") or {}
            metrics = res.get("metrics") or {}
            for metric in TASKS[task][3]:
                row[_column(task, metric)] = metrics.get(metric)
        table[m] = row
    cols = [_column(t, HEADLINE[t]) for t in tasks] + [_column(t, x) for t in tasks for x in TASKS[t][3] if x != HEADLINE[t]]
    lines = ["", "results on the held-out test splits (CIDEr: pycocoevalcap scale; VQA accuracy: fraction)"]
    head = ["method"] + cols
    rows = [[m] + [("n/a" if table[m].get(c) is None else f"{table[m][c]:.3f}") for c in cols] for m in methods]
    widths = [max(len(r[i]) for r in [head] + rows) for i in range(len(head))]
    lines.append("  ".join(h.ljust(w) for h, w in zip(head, widths)))
    lines.append("  ".join("-" * w for w in widths))
    for r in rows:
        lines.append("  ".join(c.ljust(w) for c, w in zip(r, widths)))
    for m in methods:
        if m == BLIND:
            continue
        gains = []
        for t in tasks:
            a, b = table[m].get(_column(t, HEADLINE[t])), table[BLIND].get(_column(t, HEADLINE[t]))
            if a is not None and b is not None:
                gains.append(f"{t} {HEADLINE[t]} {a:.2f} vs {b:.2f} ({a / b:.1f}x)" if b > 0 else f"{t} {HEADLINE[t]} {a:.2f} vs {b:.2f}")
        lines.append(f"{m} vs blind: " + "; ".join(gains))

    # examples
    show = [m for m in methods if m != BLIND][:1] + [BLIND]
    for task in tasks:
        base = raw.get(f"{show[0]}-{task}")
        if not base or not base.get("predictions"):
            continue
        ids = sorted(base["predictions"])[:4]
        lines.append(f"\nexamples ({task}):")
        recs = _records(data_root, TASKS[task][0])
        for i in ids:
            q = recs.get(i, {}).get("question")
            lines.append(f"  {i}" + (f"  Q: {q}" if q else ""))
            for m in show:
                p = (raw.get(f"{m}-{task}") or {}).get("predictions", {}).get(i)
                lines.append(f"    {m:>10}: {p}")
            lines.append(f"    {'reference':>10}: {base['references'][i][0]}")

    # grid of test images with the generated captions
    grid_path = None
    base = raw.get(f"{show[0]}-caption")
    if base and base.get("predictions"):
        ids = sorted(base["predictions"])[:16]
        recs = _records(data_root, "caption")
        images = [os.path.join(data_root, recs[i]["image"]) for i in ids]
        caps = {m: [(raw.get(f"{m}-caption") or {}).get("predictions", {}).get(i, "") for i in ids] for m in show}
        metric = HEADLINE["caption"]
        scores = [f"{m} {table[m].get(_column('caption', metric)):.2f}" for m in show
                  if isinstance(table[m].get(_column("caption", metric)), (int, float))]
        summary = f"caption {metric} on the held-out test split: " + ", ".join(scores) if scores else None
        grid_path = write_grid(os.path.join(out_dir, "captions_grid.png"), images, caps, [base["references"][i] for i in ids],
                               title=f"{show[0]} vs the blind baseline (same frozen LM, no perception) on test images",
                               summary=summary)
    tb = _tensorboard_summary(out_dir, table, "\n".join(lines))
    return {"table": table, "text": "\n".join(lines), "grid": grid_path, "tensorboard": tb}


def _records(data_root: str, key: str) -> dict:
    name = {"caption": "captions.jsonl", "vqa": "vqa.jsonl", "audio": "audio.jsonl"}[key]
    out = {}
    with open(os.path.join(data_root, name)) as fh:
        for line in fh:
            r = json.loads(line)
            out[r["id"]] = r
    return out


def _tensorboard_summary(out_dir: str, table: dict, text: str) -> str | None:
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        return None
    path = os.path.join(out_dir, "runs", "summary")
    w = SummaryWriter(path)
    for method, row in table.items():
        for col, v in row.items():
            if v is not None:
                w.add_scalar(f"{col}/{method}", v, 0)
    w.add_text("results", "```\n" + text + "\n```", 0)
    w.close()
    return path
