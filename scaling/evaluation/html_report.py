"""``report/index.html``: one self-contained page of a report — the scores tables, learning curves (inline SVG
from ``train_log.jsonl``), a gallery of test predictions per benchmark (media, question, references, each
run's prediction and per-sample score; sortable, filterable to the samples where runs disagree, paginated
in the browser so that 5,000+ samples stay responsive), and each run's config and backbone fingerprints,
folded. Nothing is fetched when it is opened: styles, script, charts and media previews are inside it.
"""

from __future__ import annotations

import datetime
import html
import json
import os
import re
from collections.abc import Callable
from typing import Any

from scaling.common.io import atomic_write
from scaling.evaluation.curves import learning_curves
from scaling.evaluation.gallery import Gallery, build_gallery
from scaling.evaluation.html_assets import CSS, JS
from scaling.evaluation.report import Report, _fmt_score, _scale, format_duration

PAGE_SIZES = (25, 50, 100, 200)


def _e(value: Any) -> str:
    return html.escape(str(value))


def normalise(text: str | None) -> str | None:
    """What counts as the same prediction when runs are compared: case, spacing and end punctuation ignored."""
    if text is None:
        return None
    return re.sub(r"\s+", " ", text.lower()).strip().rstrip(".!?,;:").strip()


def run_labels(report: Report, label: str) -> list[tuple[str, str]]:
    """``[(column label, run dir), ...]`` of one benchmark: the method, with the grid point and seed when needed."""
    groups = [g for g in report.groups if g.benchmark.label == label]
    per_method: dict[str, int] = {}
    for g in groups:
        per_method[g.method] = per_method.get(g.method, 0) + 1
    out = []
    for g in sorted(groups, key=lambda g: (g.method, g.point)):
        for r in g.runs:
            name = g.method
            if per_method[g.method] > 1:
                name += f" [{g.point}]"
            if len(g.runs) > 1:
                name += f" seed {r.seed}"
            out.append((name, r.path))
    return out


def _scores_tables(report: Report) -> str:
    sc = report.scale
    head = "".join(f"<th>{_e(b.column)}</th>" for b in report.benchmarks)
    rows = []
    for m in report.methods:
        cells = []
        for b in report.benchmarks:
            g = report.best.get((m, b.label))
            cells.append("<td class='num'>—</td>" if g is None else f"<td class='num'>{_e(_fmt_score(g.mean, g.std, _scale(b, sc)))}</td>")
        norm = report.avg_norm.get(m)
        rows.append(f"<tr><td>{_e(m)}</td>{''.join(cells)}<td class='num'>{report.avg_rank[m]:.2f}</td>"
                    f"<td class='num'>{'n/a' if norm is None else f'{norm:.4f}'}</td></tr>")
    main = (f"<table class='scores' id='scores'><thead><tr><th>Method</th>{head}<th>Avg. rank</th><th>Avg. norm. score</th>"
            f"</tr></thead><tbody>{''.join(rows)}</tbody></table>")
    rows = []
    for g in sorted(report.groups, key=lambda g: (g.benchmark.label, g.method, -g.benchmark.key(g.mean))):
        rows.append(f"<tr><td>{_e(g.method)}</td><td>{_e(g.benchmark.label)}</td><td>{_e(g.point)}</td>"
                    f"<td class='num'>{len(g.runs)}</td><td class='num'>{_e(_fmt_score(g.mean, g.std, _scale(g.benchmark, sc)))}</td>"
                    f"<td class='num'>{_e(format_duration(g.train_seconds))}</td><td>{'best' if g.best else ''}</td></tr>")
    points = ("<details><summary>All grid points</summary><table class='scores'><thead><tr><th>Method</th><th>Benchmark</th>"
              "<th>Grid point</th><th>Seeds</th><th>Score</th><th>Training time</th><th></th></tr></thead><tbody>"
              + "".join(rows) + "</tbody></table></details>")
    return main + points


def _gallery_html(index: int, gallery: Gallery) -> str:
    data = {"runs": [r.label for r in gallery.runs], "score_name": gallery.score_name,
            "samples": [dict(s, disagree=len({normalise(p) for p in s["preds"] if p is not None}) > 1)
                        for s in gallery.samples]}
    payload = json.dumps(data, separators=(",", ":")).replace("</", "<\\/")
    n_dis = sum(1 for s in data["samples"] if s["disagree"])
    sort = ['<option value="id">sample id</option>']
    for k, r in enumerate(gallery.runs):
        sort.append(f'<option value="s{k}-desc">{_e(gallery.score_name)} of {_e(r.label)}, high first</option>')
        sort.append(f'<option value="s{k}-asc">{_e(gallery.score_name)} of {_e(r.label)}, low first</option>')
    if len(gallery.runs) > 1:
        sort.append('<option value="spread-desc">largest score difference between runs</option>')
    sizes = "".join(f'<option value="{n}"{" selected" if n == 50 else ""}>{n}</option>' for n in PAGE_SIZES)
    head = "".join(f"<th>{_e(r.label)}</th>" for r in gallery.runs)
    notes = "".join(f"<p class='note'>{_e(n)}</p>" for n in gallery.notes)
    return f"""
<div class="gallery" id="gallery-{index}" data-src="gallery-data-{index}">
  <p class="meta">{len(gallery.samples)} test samples · {len(gallery.runs)} run(s) · runs disagree on {n_dis} ·
  per-sample score: {_e(gallery.score_name)} ×100{' (the mean over samples is the table’s score)' if gallery.task == 'caption' else ''}</p>
  {notes}
  <div class="controls">
    <label>sort by <select class="sort">{''.join(sort)}</select></label>
    <label><input type="checkbox" class="disagree"> only samples where the runs disagree</label>
    <button class="prev" type="button">‹ previous</button><span class="pageinfo"></span>
    <button class="next" type="button">next ›</button>
    <label>rows per page <select class="size">{sizes}</select></label>
  </div>
  <table class="rows"><thead><tr><th>id</th><th>media</th><th>question · references</th>{head}</tr></thead>
  <tbody></tbody></table>
  <script type="application/json" id="gallery-data-{index}">{payload}</script>
</div>"""


def _fingerprints(run_path: str) -> tuple[str | None, dict | None]:
    """(adapter file, its stored backbone fingerprints) of a run's newest checkpoint, when there is one."""
    if not any(os.path.exists(os.path.join(run_path, name)) for name in ("checkpoints", "best", "adapter.safetensors")):
        return None, None  # nothing to read (and no reason to import torch)
    try:
        from scaling.training.checkpoint import read_adapter_meta, resolve_adapter_path

        path = resolve_adapter_path(run_path)
        return path, read_adapter_meta(path).get("fingerprints")
    except Exception:  # noqa: BLE001 - a run without checkpoints (or an unreadable one): nothing to show
        return None, None


def _runs_html(report: Report) -> str:
    parts = []
    for r in sorted(report.runs, key=lambda r: (r.dataset, r.method, str(r.seed))):
        cfg_path = os.path.join(r.path, "config.yaml")
        try:
            with open(cfg_path, encoding="utf-8", errors="replace") as fh:
                cfg = fh.read()
        except OSError:
            cfg = "(no config.yaml)"
        adapter, fps = _fingerprints(r.path)
        fp = (f"<p class='meta'>adapter {_e(adapter)}</p><pre>{_e(json.dumps(fps, indent=2, sort_keys=True))}</pre>"
              if fps else "<p class='note'>no adapter checkpoint with fingerprints found</p>")
        parts.append(f"<details class='run'><summary>{_e(r.method)} · {_e(r.dataset)} · seed {_e(r.seed)} · "
                     f"<code>{_e(r.path)}</code></summary><h3>config.yaml</h3><pre>{_e(cfg)}</pre>"
                     f"<h3>backbone fingerprints</h3>{fp}</details>")
    return "".join(parts)


def render_html(report: Report, galleries: dict[str, Gallery | None], curves: dict[str, list[str]],
                title: str = "Results report") -> str:
    sections = []
    for i, b in enumerate(report.benchmarks):
        charts = curves.get(b.label) or []
        gallery = galleries.get(b.label)
        sections.append(
            f"<section class='benchmark'><h2>{_e(b.label)} <span class='meta'>({_e(b.task)}, {_e(b.metric)})</span></h2>"
            "<h3>Learning curves</h3>"
            + (f"<div class='charts'>{''.join(charts)}</div>" if charts else "<p class='note'>no train_log.jsonl</p>")
            + "<h3>Test predictions</h3>"
            + (_gallery_html(i, gallery) if gallery else "<p class='note'>no predictions.jsonl for these runs "
               "(`scaling eval` writes it)</p>")
            + "</section>")
    warnings = "".join(f"<li>{_e(w)}</li>" for w in report.warnings)
    stamp = datetime.datetime.now().strftime("%Y-%m-%d %H:%M")
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{_e(title)}</title>
<meta name="viewport" content="width=device-width, initial-scale=1"><style>{CSS}</style></head>
<body>
<h1>{_e(title)}</h1>
<p class="meta">{len(report.runs)} runs · {len(report.methods)} methods · {len(report.benchmarks)} benchmarks ·
written by <code>scaling report</code> on {stamp}. Scores ×{report.scale:g} (a training loss, marked ↓, as it is);
mean ± std over seeds.</p>
<h2>Scores (best grid point per method and benchmark)</h2>
{_scores_tables(report)}
{''.join(sections)}
<h2>Runs: configs and backbone fingerprints</h2>
{_runs_html(report)}
{f"<h2>Warnings</h2><ul>{warnings}</ul>" if warnings else ""}
<script>{JS}</script>
</body></html>
"""


def write_html_report(report: Report, out_dir: str, split: str = "test", media: bool = True,
                      warn: Callable[[str], None] = lambda m: None) -> str:
    """Build the galleries and curves of ``report`` and write ``out_dir/index.html``; returns its path."""
    galleries: dict[str, Gallery | None] = {}
    curves: dict[str, list[str]] = {}
    for b in report.benchmarks:
        runs = run_labels(report, b.label)
        curves[b.label] = learning_curves(runs)
        galleries[b.label] = build_gallery(b.label, b.task, runs, split, warn, media) if not b.lower_is_better else None
    os.makedirs(out_dir, exist_ok=True)
    path = os.path.join(out_dir, "index.html")
    with atomic_write(path, encoding="utf-8") as fh:
        fh.write(render_html(report, galleries, curves))
    return path
