"""Learning curves as inline SVG (no plotting library): the training loss and the validation metrics over
steps, read from each run's ``train_log.jsonl`` (``{"step", "kind": "train"|"eval", "loss", ...}``)."""

from __future__ import annotations

import html
import json
import math
import os
from collections.abc import Sequence

PALETTE = ("#4285f4", "#db4437", "#f4b400", "#0f9d58", "#ab47bc", "#00acc1", "#ff7043", "#9e9d24")
#: train-row keys that are not curves worth a chart
SKIP = {"step", "kind", "time", "lr", "grad_norm", "loss_scale", "skipped_steps", "samples_per_s", "tokens_per_s",
        "mfu", "peak_mem_gb", "epoch", "failed"}


def read_log(run_dir: str) -> dict[str, dict[str, list[tuple[int, float]]]]:
    """``{"train": {"loss": [(step, value), ...]}, "eval": {"CIDEr": [...], "loss": [...]}}`` (empty when no log)."""
    out: dict[str, dict[str, list[tuple[int, float]]]] = {"train": {}, "eval": {}}
    path = os.path.join(run_dir, "train_log.jsonl")
    if not os.path.isfile(path):
        return out
    with open(path, encoding="utf-8", errors="replace") as fh:
        for line in fh:
            try:
                row = json.loads(line)
            except ValueError:
                continue
            if not isinstance(row, dict) or not isinstance(row.get("step"), (int, float)):
                continue
            kind = "eval" if row.get("kind") in ("eval", "val") else "train" if row.get("kind") == "train" else None
            if kind is None:
                continue
            for key, value in row.items():
                if key in SKIP or isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                    continue
                name = key.split("/", 1)[1] if key.startswith(("val/", "eval/")) else key
                out[kind].setdefault(name, []).append((int(row["step"]), float(value)))
    return out


def _ticks(lo: float, hi: float, n: int = 4) -> list[float]:
    if hi <= lo:
        return [lo]
    raw = (hi - lo) / n
    mag = 10 ** math.floor(math.log10(raw))
    step = min((m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw), default=raw)
    start = math.ceil(lo / step) * step
    return [start + i * step for i in range(int((hi - start) / step) + 1)]


def _fmt(v: float) -> str:
    return f"{v:.3g}" if abs(v) < 1e4 else f"{v:.2e}"


def line_chart(title: str, series: Sequence[tuple[str, Sequence[tuple[int, float]]]], width: int = 420,
               height: int = 220, ylabel: str = "") -> str:
    """One SVG chart: a polyline (and dots, for short series) per ``(label, [(step, value), ...])``, axes, legend."""
    series = [(label, sorted(points)) for label, points in series if points]
    left, right, top, bottom = 52, 12, 26, 34 + 14 * ((len(series) + 1) // 2)
    h_total = height + bottom - 34
    if not series:
        return ""
    xs = [x for _, pts in series for x, _ in pts]
    ys = [y for _, pts in series for _, y in pts]
    x0, x1 = min(xs), max(xs)
    y0, y1 = min(ys), max(ys)
    if x1 == x0:
        x0, x1 = x0 - 1, x1 + 1
    if y1 == y0:
        y0, y1 = y0 - abs(y0) * 0.1 - 1e-3, y1 + abs(y1) * 0.1 + 1e-3
    pad = (y1 - y0) * 0.05
    y0, y1 = y0 - pad, y1 + pad
    pw, ph = width - left - right, height - top - 34

    def px(x: float) -> float:
        return left + (x - x0) / (x1 - x0) * pw

    def py(y: float) -> float:
        return top + (1 - (y - y0) / (y1 - y0)) * ph

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" width="{width}" height="{h_total}" '
             f'viewBox="0 0 {width} {h_total}" role="img" aria-label="{html.escape(title)}">',
             f'<text x="{left}" y="16" class="ct">{html.escape(title)}</text>',
             f'<rect x="{left}" y="{top}" width="{pw}" height="{ph}" fill="none" stroke="#bbb"/>']
    for t in _ticks(y0, y1):
        parts.append(f'<line x1="{left}" x2="{left + pw}" y1="{py(t):.1f}" y2="{py(t):.1f}" stroke="#eee"/>'
                     f'<text x="{left - 4}" y="{py(t) + 4:.1f}" text-anchor="end" class="tk">{_fmt(t)}</text>')
    for t in _ticks(x0, x1):
        parts.append(f'<text x="{px(t):.1f}" y="{top + ph + 14}" text-anchor="middle" class="tk">{_fmt(t)}</text>')
    parts.append(f'<text x="{left + pw / 2:.0f}" y="{top + ph + 28}" text-anchor="middle" class="tk">step</text>')
    if ylabel:
        parts.append(f'<text x="12" y="{top + ph / 2:.0f}" transform="rotate(-90 12 {top + ph / 2:.0f})" '
                     f'text-anchor="middle" class="tk">{html.escape(ylabel)}</text>')
    for k, (label, pts) in enumerate(series):
        colour = PALETTE[k % len(PALETTE)]
        coords = " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in pts)
        parts.append(f'<polyline fill="none" stroke="{colour}" stroke-width="1.6" points="{coords}"/>')
        if len(pts) <= 30:
            parts += [f'<circle cx="{px(x):.1f}" cy="{py(y):.1f}" r="2.2" fill="{colour}"/>' for x, y in pts]
        lx, ly = left + (k % 2) * (pw / 2), top + ph + 44 + 14 * (k // 2)
        parts.append(f'<rect x="{lx:.0f}" y="{ly - 8}" width="10" height="3" fill="{colour}"/>'
                     f'<text x="{lx + 14:.0f}" y="{ly - 4}" class="tk">{html.escape(label)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def learning_curves(runs: Sequence[tuple[str, str]]) -> list[str]:
    """SVG charts for runs ``[(label, run_dir), ...]`` of one benchmark: training loss, then one chart per
    validation metric, one line per run."""
    logs = [(label, read_log(path)) for label, path in runs]
    charts = []
    loss = [(label, log["train"].get("loss", [])) for label, log in logs]
    if any(points for _, points in loss):
        charts.append(line_chart("training loss", loss, ylabel="loss"))
    metrics = list(dict.fromkeys(name for _, log in logs for name in log["eval"]))
    for name in metrics:
        title = "validation loss" if name == "loss" else f"validation {name}"
        charts.append(line_chart(title, [(label, log["eval"].get(name, [])) for label, log in logs], ylabel=name))
    return [c for c in charts if c]
