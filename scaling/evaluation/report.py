"""Aggregate finished runs into the papers' tables: mean ± std over seeds, best grid point, ranks, carbon.

A run directory (written by the trainer) holds:

* ``config.yaml`` — the resolved config: ``model.method`` names the method, ``data.name`` (else
  ``data.train``) the dataset, ``train.seed`` the seed;
* the scores — ``{"task": "caption", "metrics": {"CIDEr": 1.27, ...}}`` as returned by
  :func:`scaling.evaluation.metrics.compute_metrics` (pycocoevalcap scale / fractions): those of
  ``scaling eval`` on the whole test split (``RUN/best/eval_test/`` or the newest ``RUN/eval/step_N_test/``,
  see :func:`scores_path`), else, with a warning, the training's own ``metrics.json`` (a val subset);
* ``train_summary.json`` — ``{"train_seconds": s, "gpu_type": "V100"|"A100"|"H100"|"cpu", "n_gpus": n, "steps": k}``.

:func:`build_report` groups runs whose configs differ only in the seed (and in run-specific paths,
see :data:`IGNORED_KEYS`) into *grid points*, reports each point's mean ± std over seeds (sample std,
``ddof=1``), keeps the best point per method × benchmark (by mean of the benchmark's metric: the
``--metric`` override, else the config's ``eval.metric``, else CIDEr for captioning and accuracy for
QA), and over those the DePALM paper's aggregates
(Table 4): the average rank of each method across benchmarks (1 = best, ties share the mean rank) and
the average normalised score (score / best score of any method on that benchmark, averaged).

Carbon footprint, as in the DePALM supplement, section E "Carbon footprint estimation":
GPU hours = training time × number of GPUs; energy (kWh) = TDP (W) × PUE / 1000 × GPU hours;
emissions (kg CO2eq) = carbon intensity (kg/kWh) × energy. The paper's numbers are the defaults:
V100-32G TDP 250 W, PUE 1.1, 0.385 kg CO2 per kWh (its Table S7: 2h14 on 8 GPUs → 17.87 GPU h →
4.91 kWh → 1.89 kg). The paper has no A100/H100: their defaults, 400 W and 700 W, are NVIDIA's SXM
board TDPs. All of them can be changed (``scaling report --tdp A100=300 --pue 1.2 --carbon-intensity 0.05``).

Scores are displayed ×100 (CIDEr 127.38, VQA accuracy 68.42) in the Markdown tables and charts; the
CSV and JSON keep the stored scale.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import yaml

from scaling.config.base import ConfigError
from scaling.evaluation.metrics import DISPLAY_SCALE, PRIMARY_METRIC

#: Metrics read from the training itself when a run has no evaluation scores (a run on a synthetic source, a run whose
#: data has no references): lower is better, shown as they are (not ×100), labelled in the tables.
LOSS_METRICS = {"val_loss": "validation loss (training's)", "final_train_loss": "final training loss"}
DEFAULT_TDP_W: dict[str, float] = {"V100": 250.0, "A100": 400.0, "H100": 700.0}
DEFAULT_PUE = 1.1
DEFAULT_CARBON_INTENSITY = 0.385  # kg CO2eq per kWh
#: Config keys that differ between runs of one grid point without making it another point.
IGNORED_KEYS = frozenset({"train.seed", "train.output_dir"})
IGNORED_LEAVES = frozenset(
    {"output_dir", "run_name", "run_dir", "resume", "resume_from", "log_dir", "logging_dir", "checkpoint_dir"}
)


@dataclasses.dataclass
class CarbonSettings:
    tdp_w: dict[str, float] = dataclasses.field(default_factory=lambda: dict(DEFAULT_TDP_W))
    pue: float = DEFAULT_PUE
    carbon_intensity: float = DEFAULT_CARBON_INTENSITY

    def tdp_for(self, gpu_type: str) -> float | None:
        """TDP of ``gpu_type``: exact (case-insensitive) key, else the longest key it contains (A100-SXM4-80GB → A100)."""
        name = str(gpu_type).upper()
        table = {k.upper(): v for k, v in self.tdp_w.items()}
        if name in table:
            return table[name]
        for key in sorted(table, key=len, reverse=True):
            if key in name:
                return table[key]
        return None


#: counts that an older metrics.json's "metrics" held beside the scores (never a score column)
COUNT_KEYS = ("unscorable_samples",)

def estimate_carbon(train_seconds: float, n_gpus: int, gpu_type: str, settings: CarbonSettings) -> dict[str, float | None]:
    """``{'gpu_hours', 'kwh', 'kg_co2'}`` for one run (None where the GPU's TDP is unknown or it ran on CPU)."""
    if str(gpu_type).lower() == "cpu" or n_gpus == 0:
        return {"gpu_hours": 0.0 if n_gpus == 0 else None, "kwh": None, "kg_co2": None}
    gpu_hours = train_seconds / 3600.0 * n_gpus
    tdp = settings.tdp_for(gpu_type)
    if tdp is None:
        return {"gpu_hours": gpu_hours, "kwh": None, "kg_co2": None}
    kwh = tdp * settings.pue / 1000.0 * gpu_hours
    return {"gpu_hours": gpu_hours, "kwh": kwh, "kg_co2": kwh * settings.carbon_intensity}


def format_duration(seconds: float | None) -> str:
    """``8040`` → ``'2h14'`` (the paper's format)."""
    if seconds is None:
        return "n/a"
    minutes = int(round(seconds / 60.0))
    return f"{minutes // 60}h{minutes % 60:02d}"


# --------------------------------------------------------------------------------------------
# loading runs
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass
class Run:
    path: str
    method: str
    dataset: str
    task: str
    seed: Any
    metrics: dict[str, float]
    hparams: dict[str, Any]  # flattened config without seed / run-specific paths
    train_seconds: float | None = None
    gpu_type: str | None = None
    n_gpus: int | None = None
    steps: int | None = None
    carbon: dict[str, float | None] | None = None
    eval_metric: str | None = None  # eval.metric of the config, when set


class RunProblem(Exception):
    """A run that cannot be used (the report warns and goes on)."""


def flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            out.update(flatten(value, name + "."))
        else:
            out[name] = value
    return out


def dataset_name(cfg_flat: Mapping[str, Any]) -> str | None:
    """``data.name`` if set, else a readable name from ``data.train`` (a dataset name or shard paths)."""
    name = cfg_flat.get("data.name")
    if name:
        return str(name)
    train = cfg_flat.get("data.train")
    if not train:
        return None
    if isinstance(train, (list, tuple)):
        names = [dataset_name({"data.train": t}) or str(t) for t in train]
        return "+".join(dict.fromkeys(names))
    text = str(train).rstrip("/")
    if "/" not in text and not re.search(r"[{*\[]|\.(tar|json|jsonl|csv|parquet)$", text):
        return text
    # a path or shard pattern: the last path component that is a plain name
    for part in reversed(text.split("/")):
        if part and not re.search(r"[{}*\[\]]", part) and not re.search(r"\.(tar|json|jsonl|csv|parquet)$", part):
            return part
    stem = os.path.basename(text)
    return re.sub(r"[-_]?\{.*$|\..*$", "", stem) or text


def _read_json(path: str) -> Any:
    with open(path) as fh:
        return json.load(fh)


def scores_path(path: str, split: str = "test") -> str | None:
    """The metrics file a run's row is built from: ``scaling eval``'s scores of the whole ``split`` —
    ``RUN/best/eval_SPLIT`` when the best checkpoint was evaluated, else the newest
    ``RUN/eval/step_N_SPLIT`` — and only without one the training's own ``RUN/metrics.json`` (its
    periodic check on a val subset, METEOR and SPICE off). None when there is none of these."""
    best = os.path.join(path, "best", f"eval_{split}", "metrics.json")
    if os.path.isfile(best):
        return best
    steps = []
    for name in os.listdir(os.path.join(path, "eval")) if os.path.isdir(os.path.join(path, "eval")) else []:
        match = re.fullmatch(rf"step_(\d+)_{re.escape(split)}", name)
        candidate = os.path.join(path, "eval", name, "metrics.json")
        if match and os.path.isfile(candidate) and not _partial(candidate):
            steps.append((int(match.group(1)), candidate))
    if steps:
        return max(steps)[1]
    own = os.path.join(path, "metrics.json")
    return own if os.path.isfile(own) else None


def training_losses(path: str) -> dict[str, float]:
    """``val_loss`` (the last validation of the training) and ``final_train_loss`` of a run, from its
    ``train_summary.json`` (else the eval rows of ``train_log.jsonl``): what a run without evaluation scores
    can be tabulated by."""
    out: dict[str, float] = {}
    summary = os.path.join(path, "train_summary.json")
    try:
        data = _read_json(summary) if os.path.isfile(summary) else {}
    except (OSError, ValueError):
        data = {}
    if isinstance(data.get("val_loss"), (int, float)):
        out["val_loss"] = float(data["val_loss"])
    if isinstance(data.get("final_loss"), (int, float)):
        out["final_train_loss"] = float(data["final_loss"])
    log = os.path.join(path, "train_log.jsonl")
    if "val_loss" not in out and os.path.isfile(log):
        with open(log) as fh:
            for line in fh:
                try:
                    row = json.loads(line)
                except ValueError:
                    continue
                value = row.get("val_loss", (row.get("values") or {}).get("val/loss") if isinstance(row.get("values"), dict) else None)
                if row.get("kind") == "eval" and isinstance(value, (int, float)):
                    out["val_loss"] = float(value)
    return {k: v for k, v in out.items() if math.isfinite(v)}


def _partial(metrics_path: str) -> bool:
    """An evaluation of part of the split (``scaling eval --limit``, written by an older version into the
    split's own folder): not the split's score."""
    try:
        return bool(_read_json(metrics_path).get("limit"))
    except (OSError, ValueError, AttributeError):
        return False


def load_run(path: str, settings: CarbonSettings, warn, split: str = "test") -> Run:
    """Read one run directory; RunProblem when it cannot be scored, ``warn(msg)`` for lesser problems."""
    cfg_path, sum_path = (os.path.join(path, f) for f in ("config.yaml", "train_summary.json"))
    if not os.path.isfile(cfg_path):
        raise RunProblem("no config.yaml")
    met_path = scores_path(path, split)
    losses = training_losses(path) if met_path is None else {}
    if met_path is None and not losses:
        raise RunProblem(f"no metrics.json, no `scaling eval` scores of split {split!r} and no training loss in "
                         f"train_summary.json (unfinished or failed run?)")
    if met_path is None:
        kind = "validation loss" if "val_loss" in losses else "final training loss"
        warn(f"no evaluation scores (no references to score, e.g. synthetic data, or not evaluated yet): tabulating its "
             f"{kind} (lower is better); `scaling eval --checkpoint {path} --split {split} --data SHARDS` scores it")
    elif met_path == os.path.join(path, "metrics.json"):
        warn(f"no `scaling eval` scores of split {split!r} (RUN/eval/step_N_{split}/): using the training's periodic "
             f"evaluation (a val subset, METEOR and SPICE off); run `scaling eval --checkpoint {path} --split {split}` "
             f"(with --data SHARDS when the run has no data.{split}) for the paper's figure")
    try:
        with open(cfg_path) as fh:
            cfg = yaml.safe_load(fh) or {}
    except yaml.YAMLError as err:
        raise RunProblem(f"config.yaml is not valid YAML ({err})") from None
    if not isinstance(cfg, dict):
        raise RunProblem("config.yaml does not hold a mapping")
    try:
        met = _read_json(met_path) if met_path else {"metrics": losses}
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise RunProblem(f"metrics.json is not valid JSON ({err})") from None
    if not isinstance(met, dict) or not isinstance(met.get("metrics"), dict):
        raise RunProblem(f'{met_path} must look like {{"task": ..., "metrics": {{...}}}}')
    if met.get("skipped"):
        warn(f"{met_path}: {met['skipped']} sample(s) could not be decoded and are not in the score")
    # the training's evaluation records this count beside its scores (top level; inside "metrics" before)
    unscorable = met.get("unscorable_samples") or met["metrics"].get("unscorable_samples")
    if unscorable:
        warn(f"{met_path}: {unscorable} validation sample(s) could not be scored and are not in the score")
    metrics = {k: float(v) for k, v in met["metrics"].items()
               if isinstance(v, (int, float)) and not isinstance(v, bool) and k not in COUNT_KEYS}
    if not metrics:
        raise RunProblem("metrics.json has no numeric metric")
    flat = flatten(cfg)
    method = flat.get("model.method")
    if not method:
        raise RunProblem("config.yaml has no model.method")
    dataset = dataset_name(flat)
    if not dataset:
        raise RunProblem("config.yaml has neither data.name nor data.train")
    task = met.get("task") or flat.get("data.task") or flat.get("eval.task")
    if not task:
        raise RunProblem('metrics.json has no "task"')
    hparams = {
        k: v for k, v in flat.items() if k not in IGNORED_KEYS and k.rsplit(".", 1)[-1] not in IGNORED_LEAVES
    }
    run = Run(path, str(method), dataset, str(task), flat.get("train.seed"), metrics, hparams)
    run.eval_metric = flat.get("eval.metric") or None
    if met_path is None:
        run.eval_metric = "val_loss" if "val_loss" in losses else "final_train_loss"
    if not os.path.isfile(sum_path):
        warn("no train_summary.json: no training time or carbon estimate for it")
        return run
    try:
        summary = _read_json(sum_path)
        run.train_seconds = float(summary["train_seconds"])
        run.gpu_type = str(summary.get("gpu_type", "unknown"))
        run.n_gpus = int(summary.get("n_gpus", 1))
        run.steps = summary.get("steps")
    except (json.JSONDecodeError, KeyError, TypeError, ValueError, UnicodeDecodeError) as err:
        warn(f"train_summary.json is unusable ({type(err).__name__}: {err}): no training time or carbon for it")
        return run
    run.carbon = estimate_carbon(run.train_seconds, run.n_gpus, run.gpu_type, settings)
    if run.carbon["kwh"] is None and run.gpu_type.lower() != "cpu":
        warn(f"no TDP known for gpu_type {run.gpu_type!r}; pass --tdp {run.gpu_type}=WATTS to estimate its carbon")
    return run


def _is_run_dir(path: str) -> bool:
    return any(os.path.isfile(os.path.join(path, f)) for f in ("config.yaml", "metrics.json"))


def discover_run_dirs(paths: Iterable[str], warn) -> list[str]:
    """Run directories among ``paths``; a directory that is not one is searched (a sweep directory)."""
    found: list[str] = []
    for path in paths:
        if not os.path.isdir(path):
            warn(path, "does not exist or is not a directory")
            continue
        if _is_run_dir(path):
            found.append(path)
            continue
        before = len(found)
        for root, dirs, _ in os.walk(path):
            dirs.sort()
            if root != path and _is_run_dir(root):
                found.append(root)
                dirs[:] = []  # do not look inside a run directory
        if len(found) == before:
            warn(path, "holds no run directory (no config.yaml / metrics.json found under it)")
    return list(dict.fromkeys(os.path.normpath(p) for p in found))


# --------------------------------------------------------------------------------------------
# aggregation
# --------------------------------------------------------------------------------------------


def _mean_std(values: Sequence[float], ddof: int) -> tuple[float | None, float | None]:
    values = [v for v in values if v is not None]
    if not values:
        return None, None
    mean = sum(values) / len(values)
    if len(values) - ddof <= 0:
        return mean, None
    var = sum((v - mean) ** 2 for v in values) / (len(values) - ddof)
    return mean, math.sqrt(var)


def _hashable(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


@dataclasses.dataclass
class Benchmark:
    dataset: str
    task: str
    metric: str
    label: str = ""

    @property
    def lower_is_better(self) -> bool:
        return self.metric in LOSS_METRICS

    def key(self, value: float) -> float:
        """Larger = better, whatever the metric's direction."""
        return -value if self.lower_is_better else value

    @property
    def column(self) -> str:
        """The table header: the metric, or what a loss is."""
        return f"{self.label} {LOSS_METRICS[self.metric]} ↓" if self.lower_is_better else f"{self.label} {self.metric}"


@dataclasses.dataclass
class Group:
    """One grid point of one method on one benchmark: the runs that differ only in the seed."""

    method: str
    benchmark: Benchmark
    hparams: dict[str, Any]
    runs: list[Run]
    ddof: int = 1
    point: str = ""
    best: bool = False

    @property
    def seeds(self) -> list:
        return [r.seed for r in self.runs]

    def stats(self, metric: str) -> tuple[float | None, float | None]:
        return _mean_std([r.metrics.get(metric) for r in self.runs], self.ddof)

    @property
    def mean(self) -> float:
        return self.stats(self.benchmark.metric)[0]

    @property
    def std(self) -> float | None:
        return self.stats(self.benchmark.metric)[1]

    def carbon_mean(self, key: str) -> float | None:
        return _mean_std([(r.carbon or {}).get(key) for r in self.runs], self.ddof)[0]

    @property
    def train_seconds(self) -> float | None:
        return _mean_std([r.train_seconds for r in self.runs], self.ddof)[0]


@dataclasses.dataclass
class Report:
    runs: list[Run]
    groups: list[Group]
    benchmarks: list[Benchmark]
    methods: list[str]
    best: dict[tuple[str, str], Group]  # (method, benchmark label) -> best grid point
    avg_rank: dict[str, float]
    avg_norm: dict[str, float]
    n_benchmarks: dict[str, int]
    settings: CarbonSettings
    warnings: list[str]
    n_dirs: int
    scale: float = DISPLAY_SCALE
    ddof: int = 1

    def totals(self) -> dict[str, float | None]:
        out: dict[str, float | None] = {}
        for key in ("gpu_hours", "kwh", "kg_co2"):
            vals = [(r.carbon or {}).get(key) for r in self.runs]
            known = [v for v in vals if v is not None]
            out[key] = sum(known) if known else None
        out["runs_without_estimate"] = sum(1 for r in self.runs if (r.carbon or {}).get("kg_co2") is None)
        return out


def _ranks(scores: dict[str, float]) -> dict[str, float]:
    """1 = highest score; tied scores share the mean of their ranks."""
    ordered = sorted(scores, key=lambda m: -scores[m])
    ranks: dict[str, float] = {}
    i = 0
    while i < len(ordered):
        j = i
        while j + 1 < len(ordered) and scores[ordered[j + 1]] == scores[ordered[i]]:
            j += 1
        for m in ordered[i : j + 1]:
            ranks[m] = (i + j) / 2.0 + 1.0
        i = j + 1
    return ranks


def _point_labels(groups: list[Group]) -> None:
    """Name each grid point by the config keys that vary among the points of its method × benchmark."""
    by_cell: dict[tuple[str, str], list[Group]] = {}
    for g in groups:
        by_cell.setdefault((g.method, g.benchmark.label), []).append(g)
    for cell in by_cell.values():
        keys = sorted({k for g in cell for k in g.hparams})
        varying = [k for k in keys if len({_hashable(g.hparams.get(k)) for g in cell}) > 1]
        leaves = [k.rsplit(".", 1)[-1] for k in varying]
        short = {k: (leaf if leaves.count(leaf) == 1 else k) for k, leaf in zip(varying, leaves)}
        for g in cell:
            g.point = ", ".join(f"{short[k]}={g.hparams.get(k)}" for k in varying) or "(single point)"


def build_report(
    run_dirs: Sequence[str],
    *,
    metric_overrides: Mapping[str, str] | None = None,
    settings: CarbonSettings | None = None,
    ddof: int = 1,
    scale: float = DISPLAY_SCALE,
    warn=None,
    split: str = "test",
) -> Report:
    """Load the runs under ``run_dirs`` and aggregate them. ConfigError when no run is usable."""
    settings = settings or CarbonSettings()
    metric_overrides = dict(metric_overrides or {})
    warnings: list[str] = []

    def warn_path(path: str, msg: str) -> None:
        text = f"run {path}: {msg}"
        warnings.append(text)
        if warn:
            warn(text)

    dirs = discover_run_dirs(run_dirs, warn_path)
    runs: list[Run] = []
    for d in dirs:
        try:
            runs.append(load_run(d, settings, lambda msg, d=d: warn_path(d, msg), split))
        except RunProblem as err:
            warn_path(d, f"skipped: {err}")

    # benchmarks = (dataset, task); metric per benchmark: --metric by dataset, then by task, then the
    # config's eval.metric, then the task's default (CIDEr / accuracy)
    bench: dict[tuple[str, str], Benchmark] = {}
    usable: list[tuple[Run, Benchmark]] = []
    for run in runs:
        # runs tabulated by a training loss (no evaluation scores) form a benchmark of their own
        key = (run.dataset, run.task, run.eval_metric in LOSS_METRICS)
        if key not in bench:
            metric = (
                (run.eval_metric if run.eval_metric in LOSS_METRICS else None)
                or metric_overrides.get(run.dataset)
                or metric_overrides.get(run.task)
                or run.eval_metric
                or PRIMARY_METRIC.get(run.task)
            )
            if metric is None:
                warn_path(run.path, f"unknown task {run.task!r}; pass --metric {run.task}=METRIC")
                continue
            bench[key] = Benchmark(run.dataset, run.task, metric)
        b = bench[key]
        if run.metrics.get(b.metric) is None:
            warn_path(run.path, f"skipped: metrics.json has no {b.metric!r} (has: {', '.join(sorted(run.metrics))})")
            continue
        usable.append((run, b))
    if not usable:
        raise ConfigError(
            f"no usable run among {len(dirs)} run director{'y' if len(dirs) == 1 else 'ies'} found in "
            f"{', '.join(run_dirs)}: each needs config.yaml (model.method, data.name or data.train) and "
            "metrics.json ({\"task\": ..., \"metrics\": {...}})"
            + (f"; problems: {'; '.join(warnings[:5])}" if warnings else "")
        )
    datasets = [b.dataset for b in bench.values()]
    for b in bench.values():
        b.label = b.dataset if datasets.count(b.dataset) == 1 else f"{b.dataset} ({b.task})"
        if datasets.count(b.dataset) > 1 and b.lower_is_better:
            b.label += " (training loss)"

    groups_by_key: dict[tuple, Group] = {}
    for run, b in usable:
        key = (run.method, b.label, _hashable(run.hparams))
        if key not in groups_by_key:
            groups_by_key[key] = Group(run.method, b, run.hparams, [], ddof)
        groups_by_key[key].runs.append(run)
    groups = list(groups_by_key.values())
    for g in groups:
        g.runs.sort(key=lambda r: _hashable(r.seed))
        seeds = [_hashable(s) for s in g.seeds]
        if len(set(seeds)) != len(seeds):
            warn_path(g.runs[0].path, f"grid point has runs with the same seed ({g.seeds}): copies of one run?")
    _point_labels(groups)

    best: dict[tuple[str, str], Group] = {}
    for g in groups:
        cell = (g.method, g.benchmark.label)
        if cell not in best or g.benchmark.key(g.mean) > g.benchmark.key(best[cell].mean):
            best[cell] = g
    for g in best.values():
        g.best = True

    benchmarks = sorted({id(g.benchmark): g.benchmark for g in groups}.values(), key=lambda b: (b.task, b.label))
    rank_sum: dict[str, list[float]] = {}
    norm_sum: dict[str, list[float]] = {}
    for b in benchmarks:
        scores = {m: g.mean for (m, label), g in best.items() if label == b.label}
        for m, r in _ranks({m: b.key(v) for m, v in scores.items()}).items():
            rank_sum.setdefault(m, []).append(r)
        top = min(scores.values()) if b.lower_is_better else max(scores.values())
        if top > 0:
            for m, s in scores.items():  # for a loss: best (lowest) / loss, so 1 = best as for scores
                norm_sum.setdefault(m, []).append(top / s if b.lower_is_better else s / top)
        else:
            warnings.append(f"benchmark {b.label}: best score is {top}, not positive; left out of the normalised score")
    avg_rank = {m: sum(v) / len(v) for m, v in rank_sum.items()}
    avg_norm = {m: sum(v) / len(v) for m, v in norm_sum.items()}
    methods = sorted(avg_rank, key=lambda m: (avg_rank[m], m))
    n_bench = {m: len(v) for m, v in rank_sum.items()}
    return Report(
        [r for r, _ in usable], groups, benchmarks, methods, best, avg_rank, avg_norm, n_bench, settings,
        warnings, len(dirs), scale, ddof,
    )  # fmt: skip


# --------------------------------------------------------------------------------------------
# output
# --------------------------------------------------------------------------------------------


def _scale(b: Benchmark, scale: float) -> float:
    """Scores are shown ×``scale``; a loss as it is."""
    return 1.0 if b.lower_is_better else scale


def _fmt_score(mean: float | None, std: float | None, scale: float) -> str:
    if mean is None:
        return "n/a"
    return f"{mean * scale:.2f}" + (f" ± {std * scale:.2f}" if std is not None else "")


def _fmt(value: float | None, digits: int = 2) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def _table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return lines


def _rank_of(values: dict[str, float], reverse: bool) -> dict[str, int]:
    ordered = sorted(values, key=lambda m: values[m], reverse=reverse)
    return {m: ordered.index(m) + 1 for m in values}


def to_markdown(report: Report, warnings_section: bool = True) -> str:
    """The report as Markdown; ``warnings_section=False`` leaves out the warnings (the terminal shows them on
    stderr as they happen: the file keeps them)."""
    s = report.settings
    sc = report.scale
    n_points = len(report.groups)
    lines = [
        "# Results report",
        "",
        f"{len(report.runs)} usable runs (of {report.n_dirs} run directories) in {n_points} grid points, "
        f"{len(report.methods)} methods, {len(report.benchmarks)} benchmarks. Scores ×{sc:g} "
        "(CIDEr as the papers print it; a training loss, marked ↓, as it is: lower is better); mean ± std over seeds "
        "(sample std); a value without ± has one seed.",
        "",
        "## Main results (best grid point per method and benchmark)",
        "",
    ]
    header = ["Method"] + [b.column for b in report.benchmarks] + ["Avg. rank", "Avg. norm. score"]
    rank_rank = _rank_of(report.avg_rank, reverse=False)
    norm_rank = _rank_of(report.avg_norm, reverse=True)
    tops = {b.label: max((g.mean for (m, lab), g in report.best.items() if lab == b.label), key=b.key, default=None)
            for b in report.benchmarks}
    rows = []
    for m in report.methods:
        row = [m]
        for b in report.benchmarks:
            g = report.best.get((m, b.label))
            if g is None:
                row.append("—")
                continue
            cell = _fmt_score(g.mean, g.std, _scale(b, sc))
            row.append(f"**{cell}**" if g.mean == tops[b.label] else cell)
        row.append(f"{report.avg_rank[m]:.2f} ({rank_rank[m]})")
        row.append(f"{report.avg_norm[m]:.4f} ({norm_rank[m]})" if m in report.avg_norm else "n/a")
        rows.append(row)
    lines += _table(header, rows)
    partial = [m for m in report.methods if report.n_benchmarks[m] < len(report.benchmarks)]
    lines += [
        "",
        "Avg. rank: rank per benchmark (1 = best, ties share the mean rank), averaged over benchmarks; "
        "Avg. norm. score: score / best score of any method on the benchmark, averaged (DePALM, Table 4). "
        "In parentheses: the method's place on that aggregate.",
    ]
    if partial:
        lines.append(
            "Methods not run on every benchmark (their aggregates cover fewer benchmarks): "
            + ", ".join(f"{m} ({report.n_benchmarks[m]}/{len(report.benchmarks)})" for m in partial)
        )
    lines += ["", "## All grid points", ""]
    rows = []
    for g in sorted(report.groups, key=lambda g: (g.benchmark.label, g.method, -g.benchmark.key(g.mean))):
        rows.append(
            [g.method, g.benchmark.label, g.point, len(g.runs), ", ".join(str(s) for s in g.seeds),
             f"{g.benchmark.metric} {_fmt_score(g.mean, g.std, _scale(g.benchmark, sc))}", "best" if g.best else ""]
        )  # fmt: skip
    lines += _table(["Method", "Benchmark", "Grid point", "Seeds", "Seed values", "Score", ""], rows)

    lines += ["", "## Training time and carbon footprint (best grid point; mean of one run over its seeds)", ""]
    rows = []
    for (m, label), g in sorted(report.best.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        gpus = sorted({f"{r.n_gpus}×{r.gpu_type}" for r in g.runs if r.gpu_type is not None})
        rows.append(
            [m, label, ", ".join(gpus) or "n/a", format_duration(g.train_seconds), _fmt(g.carbon_mean("gpu_hours")),
             _fmt(g.carbon_mean("kwh")), _fmt(g.carbon_mean("kg_co2"))]
        )  # fmt: skip
    lines += _table(["Method", "Benchmark", "GPUs", "Training time", "GPU hours", "Energy (kWh)", "kg CO2eq"], rows)
    tot = report.totals()
    tdp = ", ".join(f"{k} {v:g} W" for k, v in s.tdp_w.items())
    lines += [
        "",
        f"All {len(report.runs)} usable runs together: {_fmt(tot['gpu_hours'])} GPU hours, {_fmt(tot['kwh'])} kWh, "
        f"{_fmt(tot['kg_co2'])} kg CO2eq" + (f" ({tot['runs_without_estimate']} runs without an estimate)" if tot["runs_without_estimate"] else "") + ".",
        "",
        f"Estimate (DePALM supplement, section E): GPU hours = training time × GPUs; energy = TDP × PUE / 1000 × GPU hours; "
        f"CO2 = energy × carbon intensity. TDP: {tdp}; PUE {s.pue:g}; carbon intensity {s.carbon_intensity:g} kg CO2eq/kWh. "
        "Defaults: V100 250 W, PUE 1.1 and 0.385 kg/kWh are the paper's; A100 400 W and H100 700 W are NVIDIA's SXM TDPs "
        "(the paper has no A100/H100).",
    ]  # fmt: skip
    if report.warnings and warnings_section:
        lines += ["", "## Warnings", ""] + [f"- {w}" for w in report.warnings]
    return "\n".join(lines) + "\n"


def to_rows(report: Report) -> list[dict[str, Any]]:
    """One CSV/JSON row per grid point (stored scale, not ×100)."""
    all_metrics = sorted({k for g in report.groups for r in g.runs for k in r.metrics})
    rows = []
    for g in sorted(report.groups, key=lambda g: (g.benchmark.label, g.method, -g.benchmark.key(g.mean))):
        row: dict[str, Any] = {
            "method": g.method,
            "benchmark": g.benchmark.label,
            "dataset": g.benchmark.dataset,
            "task": g.benchmark.task,
            "metric": g.benchmark.metric,
            "point": g.point,
            "best": g.best,
            "n_seeds": len(g.runs),
            "seeds": " ".join(str(s) for s in g.seeds),
            "mean": g.mean,
            "std": g.std,
        }
        for name in all_metrics:
            row[f"{name}_mean"], row[f"{name}_std"] = g.stats(name)
        row["train_seconds_mean"] = g.train_seconds
        row["gpu_types"] = " ".join(sorted({str(r.gpu_type) for r in g.runs if r.gpu_type}))
        row["n_gpus"] = " ".join(sorted({str(r.n_gpus) for r in g.runs if r.n_gpus is not None}))
        for key in ("gpu_hours", "kwh", "kg_co2"):
            row[f"{key}_mean"] = g.carbon_mean(key)
        row["run_dirs"] = " ".join(r.path for r in g.runs)
        rows.append(row)
    return rows


def to_json(report: Report) -> dict[str, Any]:
    return {
        "n_runs": len(report.runs),
        "n_run_dirs": report.n_dirs,
        "benchmarks": [dataclasses.asdict(b) for b in report.benchmarks],
        "methods": report.methods,
        "best": {
            f"{m}|{label}": {"point": g.point, "mean": g.mean, "std": g.std, "n_seeds": len(g.runs), "hparams": g.hparams}
            for (m, label), g in report.best.items()
        },
        "avg_rank": report.avg_rank,
        "avg_normalized_score": report.avg_norm,
        "points": to_rows(report),
        "totals": report.totals(),
        "carbon_settings": dataclasses.asdict(report.settings),
        "warnings": report.warnings,
    }


def write_csv(report: Report, path: str) -> str:
    rows = to_rows(report)
    fields = list(dict.fromkeys(k for row in rows for k in row))
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=fields)
        writer.writeheader()
        for row in rows:
            writer.writerow({k: ("" if v is None else v) for k, v in row.items()})
    return path


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "benchmark"


def write_charts(report: Report, out_dir: str) -> list[str]:
    """One bar chart per benchmark (best point per method, mean ± std) and one of the normalised score."""
    from scaling.evaluation.charts import bar_chart

    paths = []
    sc = report.scale
    for b in report.benchmarks:
        cells = sorted(((m, g) for (m, lab), g in report.best.items() if lab == b.label), key=lambda mg: -b.key(mg[1].mean))
        bsc = _scale(b, sc)
        rows = [(m, g.mean * bsc, g.std * bsc if g.std is not None else None) for m, g in cells]
        title = (f"{b.label} - {LOSS_METRICS[b.metric]} (lower is better)" if b.lower_is_better
                 else f"{b.label} - {b.metric} (x{sc:g})") + ", mean ± std over seeds, best grid point"
        paths.append(bar_chart(title, rows, os.path.join(out_dir, f"chart_{_slug(b.label)}.png")))
    if report.avg_norm:
        rows = sorted(((m, v, None) for m, v in report.avg_norm.items()), key=lambda r: -r[1])
        title = "Average normalised score across benchmarks (1 = best on every benchmark)"
        paths.append(bar_chart(title, rows, os.path.join(out_dir, "chart_avg_normalized_score.png"), "{:.4f}"))
    return paths


def write_report(report: Report, out_dir: str, charts: bool = True) -> dict[str, Any]:
    """Write report.md, report.csv and (unless ``charts=False``) the PNG charts; returns their paths."""
    os.makedirs(out_dir, exist_ok=True)
    md = os.path.join(out_dir, "report.md")
    with open(md, "w") as fh:
        fh.write(to_markdown(report))
    return {
        "markdown": md,
        "csv": write_csv(report, os.path.join(out_dir, "report.csv")),
        "charts": write_charts(report, out_dir) if charts else [],
    }
