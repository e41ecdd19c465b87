"""Read prediction and reference JSON-lines files for scoring; errors name the file and line.

Predictions: one ``{"id": ..., "prediction": "..."}`` per line (``"answer"`` or ``"caption"`` are
accepted in place of ``"prediction"``). References: one ``{"id": ..., "references": [...]}`` per line
(``"answers"`` or ``"captions"`` are accepted too; a list item may be a string or a VQA-style
``{"answer": ...}`` / COCO-style ``{"caption": ...}`` dict; a bare string is one reference). Ids are
compared as strings, so ``1`` in one file and ``"1"`` in the other line up. Blank lines are skipped.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from scaling.evaluation.metrics import MetricsError

PREDICTION_KEYS = ("prediction", "answer", "caption")
REFERENCE_KEYS = ("references", "answers", "captions")


def iter_jsonl(path: str) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, object) for each non-blank line; MetricsError naming ``path:line`` otherwise."""
    try:
        fh = open(path, encoding="utf-8")
    except FileNotFoundError:
        raise MetricsError(f"{path}: file not found") from None
    except OSError as err:
        raise MetricsError(f"{path}: cannot read ({err})") from None
    with fh:
        for lineno, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as err:
                raise MetricsError(f"{path}:{lineno}: not valid JSON ({err.msg}): {line.strip()[:120]!r}") from None
            if not isinstance(obj, dict):
                raise MetricsError(f"{path}:{lineno}: expected a JSON object, got {type(obj).__name__}")
            yield lineno, obj


def _get_id(path: str, lineno: int, obj: dict[str, Any]) -> str:
    if "id" not in obj:
        raise MetricsError(f"{path}:{lineno}: missing key 'id' (keys: {sorted(obj)})")
    value = obj["id"]
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise MetricsError(f"{path}:{lineno}: 'id' must be a string or a number, got {value!r}")
    return str(value)


def _first_key(path: str, lineno: int, obj: dict[str, Any], keys: tuple[str, ...]) -> Any:
    for key in keys:
        if key in obj:
            return obj[key]
    raise MetricsError(f"{path}:{lineno}: missing key {keys[0]!r} (or {', '.join(map(repr, keys[1:]))}); keys: {sorted(obj)}")


def read_predictions(path: str) -> dict[str, str]:
    """``{id: prediction}`` from a predictions JSON-lines file."""
    out: dict[str, str] = {}
    first_line: dict[str, int] = {}
    for lineno, obj in iter_jsonl(path):
        sid = _get_id(path, lineno, obj)
        pred = _first_key(path, lineno, obj, PREDICTION_KEYS)
        if not isinstance(pred, str):
            raise MetricsError(f"{path}:{lineno}: the prediction must be a string, got {pred!r}")
        if sid in out:
            raise MetricsError(f"{path}:{lineno}: duplicate id {sid!r} (first on line {first_line[sid]})")
        out[sid] = pred
        first_line[sid] = lineno
    return out


def _reference_text(path: str, lineno: int, item: Any) -> str:
    if isinstance(item, str):
        return item
    if isinstance(item, dict):
        for key in ("answer", "caption", "text"):
            if isinstance(item.get(key), str):
                return item[key]
    raise MetricsError(f"{path}:{lineno}: a reference must be a string (or {{'answer': str}}), got {item!r}")


def read_references(path: str) -> dict[str, list[str]]:
    """``{id: [references]}`` from a references JSON-lines file."""
    out: dict[str, list[str]] = {}
    first_line: dict[str, int] = {}
    for lineno, obj in iter_jsonl(path):
        sid = _get_id(path, lineno, obj)
        refs = _first_key(path, lineno, obj, REFERENCE_KEYS)
        if isinstance(refs, str):
            refs = [refs]
        if not isinstance(refs, list):
            raise MetricsError(f"{path}:{lineno}: references must be a list of strings, got {refs!r}")
        if not refs:
            raise MetricsError(f"{path}:{lineno}: empty reference list for id {sid!r}")
        if sid in out:
            raise MetricsError(f"{path}:{lineno}: duplicate id {sid!r} (first on line {first_line[sid]})")
        out[sid] = [_reference_text(path, lineno, r) for r in refs]
        first_line[sid] = lineno
    return out
