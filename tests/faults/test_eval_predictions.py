"""Fault campaign round three, evaluation (issue 24 item 7): generated predictions are never lost. A repeated
sample id is refused before generating when the index lists the ids, else reported after every prediction is
saved; predictions are written as they are made and an interrupted evaluation resumes from them."""

import json
import os

import pytest
import torch

from scaling.evaluation import evaluate as ev
from scaling.evaluation.partial import PartialPredictions, remove_partials


def _batches(ids):
    out = []
    for k in range(0, len(ids), 2):
        chunk = ids[k:k + 2]
        out.append({"ids": chunk, "answers": [[f"ref {i}"] for i in chunk],
                    "input_ids": torch.arange(len(chunk) * 3).view(len(chunk), 3),
                    "attention_mask": torch.ones(len(chunk), 3, dtype=torch.long), "task": "caption"})
    return out


class Model(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(1))


@pytest.fixture()
def fake_generation(monkeypatch):
    """generate_batch answers 'pred <first input id>' per row and records how many rows it generated."""
    class Calls(list):
        stop_at = None

    calls = Calls()

    def generate(model, tokenizer, batch, *args, **kw):
        calls.append(len(batch["ids"]))
        if len(calls) == calls.stop_at:
            raise KeyboardInterrupt
        return [f"pred {int(row[0])}" for row in batch["input_ids"]]

    monkeypatch.setattr(ev, "generate_batch", generate)
    monkeypatch.setattr(ev, "compute_metrics", lambda task, p, r, **kw: {"n": len(p)})
    return calls


def test_a_repeated_id_is_reported_after_every_prediction_is_saved(tmp_path, fake_generation):
    saved = {}
    with pytest.raises(ev.DuplicateIds, match=r"appear more than once.*\['dup'\]"):
        ev.evaluate(Model(), None, _batches(["a", "dup", "dup", "b", "c", "d"]), "caption", progress=False,
                    save_predictions=lambda p, r: saved.update(p))
    assert sorted(saved) == ["a", "b", "c", "d", "dup"]  # nothing generated is thrown away


def test_an_interrupted_evaluation_resumes_from_the_predictions_already_made(tmp_path, fake_generation):
    ids = [f"s{i}" for i in range(10)]
    header = {"checkpoint": "x", "split": "test"}
    full = ev.evaluate(Model(), None, _batches(ids), "caption", progress=False).predictions
    fake_generation.clear()
    fake_generation.stop_at = 4  # killed while generating the 4th batch
    with pytest.raises(KeyboardInterrupt):
        ev.evaluate(Model(), None, _batches(ids), "caption", progress=False,
                    partial=PartialPredictions(str(tmp_path), 0, header))
    lines = open(tmp_path / "predictions.rank00000.partial.jsonl").read().splitlines()
    assert json.loads(lines[0]) == {"header": header} and len(lines) == 1 + 6  # 3 batches kept on disk
    fake_generation.clear()
    fake_generation.stop_at = None
    partial = PartialPredictions(str(tmp_path), 0, header)
    assert len(partial.done) == 6
    resumed = ev.evaluate(Model(), None, _batches(ids), "caption", progress=False, partial=partial)
    assert fake_generation == [2, 2]  # only the last 4 samples were generated again
    assert resumed.predictions == full
    # another evaluation (another header) does not take them
    assert PartialPredictions(str(tmp_path / "other"), 0, header).done == {}
    assert PartialPredictions(str(tmp_path), 1, {**header, "split": "val"}).done == {}
    remove_partials(str(tmp_path))
    assert not [n for n in os.listdir(tmp_path) if n.endswith(".partial.jsonl")]


def test_a_partly_done_batch_generates_only_its_missing_rows(tmp_path, fake_generation):
    partial = PartialPredictions(str(tmp_path), 0, {"k": 1})
    partial.add([("s1", "pred 3", ["ref s1"])])
    partial.close()
    partial = PartialPredictions(str(tmp_path), 0, {"k": 1})
    out = ev.evaluate(Model(), None, _batches(["s0", "s1", "s2"]), "caption", progress=False, partial=partial)
    assert fake_generation == [1, 1] and out.predictions == {"s0": "pred 0", "s1": "pred 3", "s2": "pred 0"}


def test_scaling_eval_refuses_ids_repeated_in_the_index_before_generating(tmp_path):
    import io
    import random

    from scaling.cli.eval import check_unique_ids
    from scaling.config import load_config
    from scaling.config.base import ConfigError
    from scaling.data.shards import ShardSetWriter, sample_record, update_index
    from scaling.data.synthetic import make_image

    d = str(tmp_path)
    writer = ShardSetWriter(os.path.join(d, "test-%06d.tar"), d, samples_per_shard=5)
    for k, i in enumerate(["a", "dup", "b", "dup"]):
        img, color, shape = make_image(random.Random(k), 36)
        buf = io.BytesIO()
        img.save(buf, format="JPEG")
        writer.write(f"k{k}", sample_record(i, "caption", "x", "test", ["a cat"]), {"jpg": buf.getvalue()})
    entries = writer.close()
    update_index(d, "test", {"task": "caption", "modality": "image", "num_samples": 4,
                             "shards": [e.__dict__ for e in entries]}, writer.samples)
    cfg = load_config(None, [f"data.test={d}"])
    with pytest.raises(ConfigError, match=r"\['dup'\].*Nothing was generated"):
        check_unique_ids(cfg, "test")
    with pytest.raises(ConfigError, match="dup"):  # a shard pattern finds the ids in the index next to it
        check_unique_ids(load_config(None, [f"data.test={d}/test-000000.tar"]), "test")
