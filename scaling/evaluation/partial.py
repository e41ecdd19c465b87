"""Predictions kept as they are made, so that no generation is lost and an interrupted evaluation resumes.

Each rank appends every batch's predictions to ``OUT/predictions.rankNNNNN.partial.jsonl`` (flushed and
fsynced per batch). The first line is a header naming what was evaluated (checkpoint, data, split, task,
generation settings): a later ``scaling eval`` with the same header takes the predictions already made
instead of generating them again, so an evaluation killed after 5 minutes restarts where it stopped. Once
``predictions.jsonl`` is written, the partial files are removed.
"""

from __future__ import annotations

import glob
import json
import os
from typing import Any

PATTERN = "predictions.rank*.partial.jsonl"


def partial_path(out_dir: str, rank: int) -> str:
    return os.path.join(out_dir, f"predictions.rank{rank:05d}.partial.jsonl")


def _read(path: str, header: dict[str, Any]) -> dict[str, tuple[str, list[str]]]:
    """{id: (prediction, references)} of one partial file written for ``header`` ({} for another header)."""
    out: dict[str, tuple[str, list[str]]] = {}
    try:
        with open(path, encoding="utf-8") as fh:
            lines = fh.read().splitlines()
    except OSError:
        return out
    try:
        if not lines or json.loads(lines[0]).get("header") != header:
            return out
    except (ValueError, AttributeError):
        return out
    for line in lines[1:]:
        try:  # a line cut by the kill is the only one that can be incomplete: that sample is generated again
            rec = json.loads(line)
            out[str(rec["id"])] = (str(rec["prediction"]), [str(r) for r in rec["references"]])
        except (ValueError, KeyError, TypeError):
            continue
    return out


class PartialPredictions:
    """This rank's partial file, and the predictions every earlier try of the same evaluation left."""

    def __init__(self, out_dir: str, rank: int, header: dict[str, Any]):
        os.makedirs(out_dir, exist_ok=True)
        self.out_dir, self.header = out_dir, json.loads(json.dumps(header, default=str))
        self.path = partial_path(out_dir, rank)
        self.done: dict[str, tuple[str, list[str]]] = {}
        for path in sorted(glob.glob(os.path.join(out_dir, PATTERN))):
            self.done.update(_read(path, self.header))
        own = _read(self.path, self.header) if os.path.isfile(self.path) else None
        if own is None or (not own and not self._has_header()):
            with open(self.path, "w", encoding="utf-8") as fh:  # another evaluation's leftovers: start afresh
                fh.write(json.dumps({"header": self.header}) + "\n")
        self.fh = open(self.path, "a", encoding="utf-8")

    def _has_header(self) -> bool:
        try:
            with open(self.path, encoding="utf-8") as fh:
                return json.loads(fh.readline()).get("header") == self.header
        except (OSError, ValueError, AttributeError):
            return False

    def add(self, items: list[tuple[str, str, list[str]]]) -> None:
        """Append (id, prediction, references) of one batch, on disk before the next batch is generated."""
        for i, text, refs in items:
            self.fh.write(json.dumps({"id": i, "prediction": text, "references": list(refs)}) + "\n")
        self.fh.flush()
        os.fsync(self.fh.fileno())

    def close(self) -> None:
        self.fh.close()


def remove_partials(out_dir: str) -> None:
    """Delete every rank's partial file (``predictions.jsonl`` holds them all now)."""
    for path in glob.glob(os.path.join(out_dir, PATTERN)):
        try:
            os.remove(path)
        except OSError:
            pass
