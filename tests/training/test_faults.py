"""Fault tolerance of the loop: evaluation after the save, a failing evaluation does not end the run."""

import io
import json
import os
import random

from scaling.config import load_config
from scaling.training import checkpoint as ckpt
from scaling.training.loop import read_log, train
from scaling.training.toy import tiny_run_overrides


def run(tmp_path, name, steps, *extra, **kw):
    cfg = load_config(None, tiny_run_overrides(str(tmp_path / name), steps) + list(extra))
    return train(cfg, **kw)


def test_the_checkpoint_is_saved_before_evaluating_and_a_failing_evaluation_does_not_end_training(tmp_path):
    seen = {}

    def evaluate_fn(model, step):
        seen[step] = ckpt.find_latest(str(tmp_path / "run"))
        if step == 2:
            raise ValueError("5 sample(s) have an empty reference list (e.g. ['a'])")
        return {"CIDEr": 0.25 * step}

    result = run(tmp_path, "run", 4, "train.save_every=2", "train.eval_every=2", evaluate_fn=evaluate_fn)
    assert result.exit_code == 0 and result.state.step == 4
    # each evaluation found its own step's checkpoint already written
    assert seen[2].endswith("step_000002") and seen[4].endswith("step_000004")
    summary = json.load(open(os.path.join(result.output_dir, "train_summary.json")))
    assert summary["finished"] and [f["step"] for f in summary["eval_failures"]] == [2]
    assert "empty reference list" in summary["eval_failures"][0]["error"]
    evals = read_log(result.output_dir, "eval")
    assert any(r["step"] == 2 and r.get("eval/failed") == 1.0 for r in evals)
    # the evaluation after the save is recorded in that checkpoint's state (a resume keeps the best)
    state = ckpt.read_json(os.path.join(seen[4], ckpt.STATE))
    assert state["last_metrics"]["CIDEr"] == 1.0 and state["best"]["step"] == 4


def test_the_eval_loader_skips_and_counts_samples_without_references(tmp_path):
    from scaling.data.shards import ShardSetWriter, sample_record, update_index
    from scaling.data.stream import build_loader
    from scaling.data.synthetic import make_image
    from scaling.models.tiny import word_tokenizer

    d, rng, unscorable = str(tmp_path), random.Random(0), {1, 4, 7}
    writer = ShardSetWriter(os.path.join(d, "val-%06d.tar"), d, samples_per_shard=5)
    for i in range(10):
        img, color, shape = make_image(rng, 36)
        buf = io.BytesIO()
        img.save(buf, format="JPEG")
        answers = [] if i in unscorable else [f"a {color} {shape}"]
        writer.write(f"k{i:04d}", sample_record(f"id{i}", "caption", "x", "val", answers), {"jpg": buf.getvalue()})
    entries = writer.close()
    update_index(d, "val", {"task": "caption", "modality": "image", "num_samples": 10,
                            "shards": [e.__dict__ for e in entries]}, writer.samples)
    cfg = load_config(None, ["model.encoder=tiny-vit", f"data.val={d}", "eval.batch_size=4", "data.num_workers=0"])
    loader = build_loader(cfg, word_tokenizer(), "val", 0, 1, False)
    batches = list(loader)
    ids = [i for b in batches for i in b["ids"]]
    assert sorted(ids) == sorted(f"id{i}" for i in range(10) if i not in unscorable)
    assert all(all(refs) for b in batches for refs in b["answers"])
    assert loader.skipped == 3 and all("no reference answer" in k for k in loader.skipped_keys)
