"""Where the demo points at the end: the HTML report of its runs (``OUT/report/index.html``, the page that
``scaling report`` writes) and the ``scaling serve`` line that tries its caption adapter in a browser."""

from __future__ import annotations

import os
from collections.abc import Callable


def write_html_report(runs_dir: str, out_dir: str, echo: Callable[[str], None]) -> str | None:
    """``scaling report RUNS --out OUT/report`` (tables, charts and index.html); None, with a note, when it fails:
    the demo's own results are already printed and saved, a report problem must not fail the demo."""
    from scaling.evaluation.html_report import write_html_report as write_html
    from scaling.evaluation.report import build_report, write_report

    try:
        report = build_report([runs_dir], warn=lambda m: None)
        write_report(report, out_dir, charts=False)
        return write_html(report, out_dir)
    except Exception as err:  # noqa: BLE001 - see the docstring
        echo(f"note: the HTML report could not be written ({type(err).__name__}: {err}); `scaling report {runs_dir}` retries it")
        return None


def serve_line(runs_dir: str, methods: list[str], tasks: list[str]) -> str | None:
    """``scaling serve --checkpoint RUN`` for the first method's caption adapter (else its first task's)."""
    method = next((m for m in methods if m != "blind"), None)
    if method is None:
        return None
    for task in ["caption"] + [t for t in tasks if t != "caption"]:
        run = os.path.join(runs_dir, f"{method}-{task}")
        if os.path.isdir(run):
            return f"scaling serve --checkpoint {run}"
    return None
