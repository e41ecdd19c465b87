"""`scaling report` on synthetic run directories: mean ± std, best point, ranks, normalised score, carbon, charts."""

from __future__ import annotations

import json
import statistics

import pytest
import yaml
from PIL import Image

from scaling.cli.main import main
from scaling.config.base import ConfigError
from scaling.evaluation.report import (
    CarbonSettings,
    _ranks,
    build_report,
    dataset_name,
    estimate_carbon,
    format_duration,
    write_report,
)

# (method, dataset) -> {lr: [score for seeds 0, 1, 2]} (fractions, as metrics.json stores them)
SCORES = {
    ("depalm", "coco"): {1e-3: [1.25, 1.27, 1.26], 8e-4: [1.28, 1.27, 1.29]},
    ("limber-all", "coco"): {1e-3: [1.30, 1.29, 1.31], 8e-4: [1.20, 1.22, 1.21]},
    ("epalm", "coco"): {1e-3: [1.05, 1.07, 1.06], 8e-4: [1.04, 1.03, 1.05]},
    ("depalm", "vqav2"): {1e-3: [0.684, 0.686, 0.682], 8e-4: [0.680, 0.681, 0.679]},
    ("limber-all", "vqav2"): {1e-3: [0.670, 0.690, 0.680], 8e-4: [0.675, 0.676, 0.677]},
    ("epalm", "vqav2"): {1e-3: [0.570, 0.575, 0.580], 8e-4: [0.560, 0.565, 0.570]},
    ("depalm", "msrvtt-qa"): {1e-3: [0.40, 0.41, 0.42]},
    ("limber-all", "msrvtt-qa"): {1e-3: [0.38, 0.39, 0.40]},
}
TASK = {"coco": "caption", "vqav2": "vqa", "msrvtt-qa": "videoqa"}
METRIC = {"caption": "CIDEr", "vqa": "accuracy", "videoqa": "accuracy"}


def _write_run(root, method, dataset, lr, seed, score, summary=True):
    d = root / f"{method}_{dataset}_lr{lr}_s{seed}"
    d.mkdir(parents=True)
    # vqav2 is named through its shard pattern only, the others through data.name
    data = {"train": f"shards/{dataset}/train-{{000000..000031}}.tar", "task": TASK[dataset]}
    if dataset != "vqav2":
        data["name"] = dataset
    cfg = {"model": {"method": method}, "data": data, "train": {"lr": lr, "seed": seed, "output_dir": str(d)}}
    (d / "config.yaml").write_text(yaml.safe_dump(cfg))
    metrics = {METRIC[TASK[dataset]]: score, "BLEU-4": 0.3}
    (d / "metrics.json").write_text(json.dumps({"task": TASK[dataset], "metrics": metrics}))
    if summary:
        # 2h14 on one 8-GPU V100 node: the DePALM supplement's COCO row (Table S7)
        (d / "train_summary.json").write_text(json.dumps({"train_seconds": 8040.0, "gpu_type": "V100", "n_gpus": 8, "steps": 100}))
    return d


@pytest.fixture(scope="module")
def runs_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    for (method, dataset), by_lr in SCORES.items():
        for lr, scores in by_lr.items():
            for seed, score in enumerate(scores):
                _write_run(root, method, dataset, lr, seed, score)
    # runs a report of many runs must survive: unfinished, broken metrics, metric missing, no summary
    (root / "unfinished").mkdir()
    (root / "unfinished" / "config.yaml").write_text(yaml.safe_dump({"model": {"method": "depalm"}}))
    broken = _write_run(root, "depalm", "coco", 5e-4, 0, 1.0)
    (broken / "metrics.json").write_text("{not json")
    nometric = _write_run(root, "depalm", "coco", 4e-4, 0, 1.0)
    (nometric / "metrics.json").write_text(json.dumps({"task": "caption", "metrics": {"BLEU-4": 0.3}}))
    _write_run(root, "mapl", "coco", 1e-3, 0, 1.1, summary=False)
    return root


@pytest.fixture(scope="module")
def report(runs_root):
    return build_report([str(runs_root)])


def test_groups_mean_std_over_seeds_and_best_point(report):
    for (method, dataset), by_lr in SCORES.items():
        best_lr = max(by_lr, key=lambda lr: statistics.mean(by_lr[lr]))
        g = report.best[(method, dataset)]
        assert g.hparams["train.lr"] == best_lr
        assert g.mean == pytest.approx(statistics.mean(by_lr[best_lr]))
        assert g.std == pytest.approx(statistics.stdev(by_lr[best_lr]))  # sample std over the 3 seeds
        assert g.seeds == [0, 1, 2]
        others = [x for x in report.groups if (x.method, x.benchmark.label) == (method, dataset) and x is not g]
        assert len(others) == len(by_lr) - 1 and not any(x.best for x in others)
    assert report.best[("depalm", "coco")].point == "lr=0.0008"
    assert report.best[("mapl", "coco")].std is None  # one seed: no std


def test_dataset_from_data_name_or_shards(report):
    assert {b.label for b in report.benchmarks} == {"coco", "vqav2", "msrvtt-qa"}
    assert dataset_name({"data.train": "shards/coco/train-{000000..000031}.tar"}) == "coco"
    assert dataset_name({"data.train": "vqav2"}) == "vqav2"
    assert dataset_name({"data.name": "VQAv2", "data.train": "x/y.tar"}) == "VQAv2"
    assert dataset_name({"data.train": ["a/coco/t-{0..1}.tar", "b/cc3m/t-{0..9}.tar"]}) == "coco+cc3m"


def test_average_rank_and_normalised_score(report):
    best = {k: statistics.mean(v[max(v, key=lambda lr: statistics.mean(v[lr]))]) for k, v in SCORES.items()}
    best[("mapl", "coco")] = 1.1
    ranks: dict[str, list[float]] = {}
    norms: dict[str, list[float]] = {}
    for dataset in ("coco", "vqav2", "msrvtt-qa"):
        cell = {m: s for (m, d), s in best.items() if d == dataset}
        top = max(cell.values())
        for r, m in enumerate(sorted(cell, key=lambda m: -cell[m]), start=1):
            ranks.setdefault(m, []).append(r)
            norms.setdefault(m, []).append(cell[m] / top)
    for m in ranks:
        assert report.avg_rank[m] == pytest.approx(statistics.mean(ranks[m])), m
        assert report.avg_norm[m] == pytest.approx(statistics.mean(norms[m])), m
    # coco: limber 1, depalm 2, mapl 3, epalm 4; vqav2: depalm 1, limber 2, epalm 3; msrvtt: depalm 1, limber 2
    assert report.avg_rank["depalm"] == pytest.approx((2 + 1 + 1) / 3)
    assert report.methods[0] == "depalm"
    assert report.n_benchmarks["epalm"] == 2 and report.n_benchmarks["mapl"] == 1


def test_ties_share_the_mean_rank():
    assert _ranks({"a": 0.5, "b": 0.7, "c": 0.5, "d": 0.1}) == {"b": 1.0, "a": 2.5, "c": 2.5, "d": 4.0}


def test_carbon_defaults_reproduce_depalm_table_s7():
    s = CarbonSettings()
    assert (s.tdp_w["V100"], s.pue, s.carbon_intensity) == (250.0, 1.1, 0.385)  # DePALM supplement E
    c = estimate_carbon(2 * 3600 + 14 * 60, 8, "V100", s)  # COCO: 2h14 on 8 GPUs
    assert round(c["gpu_hours"], 2) == 17.87 and round(c["kwh"], 2) == 4.91 and round(c["kg_co2"], 2) == 1.89
    c = estimate_carbon(1 * 3600 + 23 * 60, 8, "Tesla V100-SXM2-32GB", s)  # OKVQA: 1h23
    assert round(c["gpu_hours"], 2) == 11.07 and round(c["kwh"], 2) == 3.04 and round(c["kg_co2"], 2) == 1.17
    c = estimate_carbon(3600, 4, "A100", s)  # 4 GPU h × 400 W × 1.1 = 1.76 kWh; × 0.385 = 0.6776 kg
    assert c["kwh"] == pytest.approx(1.76) and c["kg_co2"] == pytest.approx(0.6776)
    assert estimate_carbon(3600, 1, "H100", s)["kwh"] == pytest.approx(0.77)
    assert estimate_carbon(3600, 1, "cpu", s)["kg_co2"] is None
    assert estimate_carbon(3600, 1, "MI300", s) == {"gpu_hours": 1.0, "kwh": None, "kg_co2": None}
    assert format_duration(8040) == "2h14"


def test_report_carbon_and_totals(report):
    g = report.best[("depalm", "coco")]
    assert g.carbon_mean("gpu_hours") == pytest.approx(8040 / 3600 * 8)
    assert g.carbon_mean("kg_co2") == pytest.approx(8040 / 3600 * 8 * 0.25 * 1.1 * 0.385)
    totals = report.totals()
    n_with_summary = sum(len(v) for by_lr in SCORES.values() for v in by_lr.values())
    assert totals["kg_co2"] == pytest.approx(n_with_summary * 8040 / 3600 * 8 * 0.25 * 1.1 * 0.385)
    assert totals["runs_without_estimate"] == 1  # the mapl run has no train_summary.json


def test_broken_runs_are_warned_about_by_name(report, runs_root):
    text = "\n".join(report.warnings)
    assert f"{runs_root / 'unfinished'}: skipped: no metrics.json" in text
    assert "depalm_coco_lr0.0005_s0: skipped: metrics.json is not valid JSON" in text
    assert "depalm_coco_lr0.0004_s0: skipped: metrics.json has no 'CIDEr'" in text
    assert "mapl_coco_lr0.001_s0: no train_summary.json" in text
    assert len(report.runs) == sum(len(v) for by_lr in SCORES.values() for v in by_lr.values()) + 1


def test_outputs_markdown_csv_and_pngs(report, tmp_path):
    out = write_report(report, str(tmp_path / "rep"))
    md = open(out["markdown"]).read()
    assert "| depalm |" in md and "128.00 ± 1.00" in md  # ×100 display: mean 1.28, sample std 0.01 of 1.28, 1.27, 1.29
    assert "17.87" in md and "4.91" in md and "1.89" in md and "2h14" in md
    assert "0.385" in md and "PUE 1.1" in md
    lines = open(out["csv"]).read().splitlines()
    assert lines[0].startswith("method,benchmark,dataset,task,metric,point,best,n_seeds")
    assert len(lines) == 1 + len(report.groups)
    assert len(out["charts"]) == len(report.benchmarks) + 1
    for path in out["charts"]:
        with Image.open(path) as img:
            img.verify()
        with Image.open(path) as img:
            assert img.format == "PNG" and img.size[0] > 100 and img.size[1] > 50


def test_cli_report_json_and_flags(runs_root, tmp_path, capsys):
    out = tmp_path / "rep"
    args = ["report", str(runs_root), "--out", str(out), "--json", "--tdp", "V100=300", "--pue", "1.2",
            "--carbon-intensity", "0.1", "--no-charts"]  # fmt: skip
    assert main(args) == 0
    captured = capsys.readouterr()
    data = json.loads(captured.out.strip().splitlines()[-1])
    assert "unfinished" in captured.err  # warnings go to stderr and name the run
    assert data["carbon_settings"] == {"tdp_w": {"A100": 400.0, "H100": 700.0, "V100": 300.0}, "pue": 1.2, "carbon_intensity": 0.1}
    best = data["best"]["depalm|coco"]
    assert best["mean"] == pytest.approx(statistics.mean([1.28, 1.27, 1.29])) and best["n_seeds"] == 3
    row = next(r for r in data["points"] if r["method"] == "depalm" and r["benchmark"] == "coco" and r["best"])
    assert row["kg_co2_mean"] == pytest.approx(8040 / 3600 * 8 * 0.300 * 1.2 * 0.1)
    assert (out / "report.md").exists() and (out / "report.csv").exists() and not list(out.glob("*.png"))


def test_metric_override_per_dataset(runs_root):
    rep = build_report([str(runs_root)], metric_overrides={"coco": "BLEU-4"})
    assert next(b for b in rep.benchmarks if b.label == "coco").metric == "BLEU-4"


def test_no_usable_run_is_an_error(tmp_path, capsys):
    (tmp_path / "r1").mkdir()
    (tmp_path / "r1" / "config.yaml").write_text("model: {method: depalm}\n")
    with pytest.raises(ConfigError, match="no usable run"):
        build_report([str(tmp_path)])
    assert main(["report", str(tmp_path / "r1"), str(tmp_path / "missing"), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "no usable run" in err and "missing" in err


def test_a_runs_row_comes_from_scaling_eval_of_the_test_split(tmp_path):
    # the training's own metrics.json is its periodic check on a val subset; `scaling eval` of the test
    # split (newest step, or RUN/best) is what a paper table reports
    run = _write_run(tmp_path, "depalm", "coco", 1e-4, 0, 0.50)
    for step, score in ((5, 0.70), (10, 0.90)):
        d = run / "eval" / f"step_{step}_test"
        d.mkdir(parents=True)
        (d / "metrics.json").write_text(json.dumps({"task": "caption", "metrics": {"CIDEr": score}, "split": "test"}))
    warnings = []
    rep = build_report([str(tmp_path)], warn=warnings.append)
    assert rep.runs[0].metrics["CIDEr"] == pytest.approx(0.90) and not warnings
    best = run / "best" / "eval_test"
    best.mkdir(parents=True)
    (best / "metrics.json").write_text(json.dumps({"task": "caption", "metrics": {"CIDEr": 0.80}, "skipped": 2}))
    rep = build_report([str(tmp_path)], warn=warnings.append)
    assert rep.runs[0].metrics["CIDEr"] == pytest.approx(0.80)
    assert any("2 sample(s) could not be decoded" in w for w in warnings)
    # no eval of the asked split: the training's scores, with a warning that says what to run
    warnings.clear()
    rep = build_report([str(tmp_path)], warn=warnings.append, split="val")
    assert rep.runs[0].metrics["CIDEr"] == pytest.approx(0.50)
    assert any("using the training's periodic evaluation" in w and "--split val" in w for w in warnings)


def test_the_terminal_shows_each_warning_once_and_the_file_keeps_them(runs_root, tmp_path, capsys):
    from scaling.cli.main import main

    assert main(["report", str(runs_root), "--out", str(tmp_path / "rep"), "--no-charts", "--no-html"]) == 0
    captured = capsys.readouterr()
    shown = captured.out + captured.err
    warning = "metrics.json is not valid JSON"
    assert shown.count(warning) == 1, "a warning must reach the terminal once (stderr), not again in the Markdown"
    assert warning in captured.err
    assert warning in open(tmp_path / "rep" / "report.md").read(), "the written report keeps its warnings"
