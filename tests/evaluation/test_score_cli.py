"""`scaling score` end to end through scaling.cli.main.main on temporary JSON-lines files."""

from __future__ import annotations

import json

import pytest

from scaling.cli.main import main
from scaling.evaluation.metrics import compute_metrics


def _write(path, rows):
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return str(path)


def _last_json(out: str) -> dict:
    return json.loads(out.strip().splitlines()[-1])


def test_score_vqa_json(tmp_path, capsys):
    pred = _write(tmp_path / "p.jsonl", [{"id": 1, "prediction": "Two"}, {"id": "q2", "prediction": "yes"}])
    ref = _write(
        tmp_path / "r.jsonl",
        [{"id": "1", "answers": ["2"] * 3 + ["3"] * 7}, {"id": "q2", "references": ["no"] * 10}],
    )
    assert main(["score", "--task", "vqa", "--predictions", pred, "--references", ref, "--json"]) == 0
    data = _last_json(capsys.readouterr().out)
    assert data["task"] == "vqa" and data["n_samples"] == 2
    assert data["metrics"]["accuracy"] == pytest.approx((0.9 + 0.0) / 2)


def test_score_caption_json_and_table(tmp_path, capsys):
    refs = {"a": ["A dog runs on the grass.", "a brown dog running"], "b": ["Two cats sleep on a bed.", "cats on a bed"]}
    preds = {"a": "a dog running on grass", "b": "two cats on a bed"}
    pred = _write(tmp_path / "p.jsonl", [{"id": k, "prediction": v} for k, v in preds.items()])
    ref = _write(tmp_path / "r.jsonl", [{"id": k, "captions": v} for k, v in refs.items()])
    args = ["score", "--task", "caption", "--predictions", pred, "--references", ref, "--no-meteor"]
    assert main(args + ["--json"]) == 0
    data = _last_json(capsys.readouterr().out)
    expected = compute_metrics("caption", preds, refs, meteor=False)
    assert data["metrics"] == pytest.approx({k: v for k, v in expected.items() if v is not None} | {k: None for k, v in expected.items() if v is None})
    assert data["metrics"]["METEOR"] is None  # skipped on request
    assert main(args) == 0
    table = capsys.readouterr().out
    assert "CIDEr" in table and "x100" in table and f"{expected['CIDEr'] * 100:.2f}" in table


def test_score_malformed_line_names_file_and_line(tmp_path, capsys):
    pred = tmp_path / "p.jsonl"
    pred.write_text('{"id": 1, "prediction": "yes"}\n\n{"id": 2, "prediction": "no"\n')
    ref = _write(tmp_path / "r.jsonl", [{"id": 1, "answers": ["yes"]}, {"id": 2, "answers": ["no"]}])
    assert main(["score", "--task", "gqa", "--predictions", str(pred), "--references", ref]) == 2
    assert f"{pred}:3" in capsys.readouterr().err


def test_score_missing_keys_and_mismatched_ids(tmp_path, capsys):
    pred = _write(tmp_path / "p.jsonl", [{"id": 1, "text": "yes"}])
    ref = _write(tmp_path / "r.jsonl", [{"id": 1, "answers": ["yes"]}])
    assert main(["score", "--task", "gqa", "--predictions", pred, "--references", ref]) == 2
    err = capsys.readouterr().err
    assert "p.jsonl:1" in err and "'prediction'" in err
    pred = _write(tmp_path / "p.jsonl", [{"id": 1, "prediction": "yes"}, {"id": 9, "prediction": "yes"}])
    assert main(["score", "--task", "videoqa", "--predictions", pred, "--references", ref]) == 2
    assert "1 prediction id(s) have no reference" in capsys.readouterr().err
