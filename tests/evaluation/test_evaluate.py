"""Batched sharded evaluation: batch = batch-size-1, every sample exactly once over 2 gloo ranks."""

import json
import os
import socket
import subprocess
import sys
import textwrap

import pytest
import torch
from transformers import AutoTokenizer

from scaling.config.base import ConfigError
from scaling.config.model import model_config
from scaling.evaluation import evaluate as evaluate_module
from scaling.evaluation.evaluate import evaluate, postprocess, write_predictions, write_results
from scaling.evaluation.metrics import MetricsError
from scaling.models.builder import build_model

QUESTIONS = ["what color is the circle ?", "how many objects ?", "is there a red square ?", "what shape is on the left ?",
             "what color ?", "what shape is above the blue star ?", "how many ?"]


def make_batches(tokenizer, n, batch_size, offset=0):
    """Samples offset..offset+n-1; sample i always has the same image and question."""
    batches = []
    for start in range(offset, offset + n, batch_size):
        idx = list(range(start, min(offset + n, start + batch_size)))
        images = torch.stack([torch.randn(3, 32, 32, generator=torch.Generator().manual_seed(i)) for i in idx])
        enc = tokenizer([QUESTIONS[i % len(QUESTIONS)] + " </a>" for i in idx], return_tensors="pt", padding=True, padding_side="left")
        batches.append({"input_ids": enc.input_ids, "attention_mask": enc.attention_mask, "pixel_values": images,
                        "ids": [f"q{i}" for i in idx], "answers": [["red", "red", "blue"] for _ in idx]})
    return batches


@pytest.fixture(scope="module")
def model_and_tokenizer(backbones):
    torch.manual_seed(0)
    model = build_model(model_config(method="depalm", llm=backbones["llama"], encoder=backbones["vit"], frozen_dtype="fp32",
                                     map={"d_embed": 32}, finetune={"n_prompt": 2})).eval()
    return model, AutoTokenizer.from_pretrained(backbones["llama"])


def test_batched_predictions_equal_batch_size_one(model_and_tokenizer):
    model, tok = model_and_tokenizer
    batched = evaluate(model, tok, make_batches(tok, 7, 4), "vqa", max_new_tokens=6, progress=False)
    single = evaluate(model, tok, make_batches(tok, 7, 1), "vqa", max_new_tokens=6, progress=False)
    assert len(batched.predictions) == 7
    assert batched.predictions == single.predictions
    assert batched.metrics == single.metrics and "accuracy" in batched.metrics


def test_beam_search_batched_equals_single(model_and_tokenizer):
    model, tok = model_and_tokenizer
    a = evaluate(model, tok, make_batches(tok, 5, 5), "vqa", max_new_tokens=5, num_beams=3, progress=False)
    b = evaluate(model, tok, make_batches(tok, 5, 1), "vqa", max_new_tokens=5, num_beams=3, progress=False)
    assert a.predictions == b.predictions


def test_empty_split_and_results_files(model_and_tokenizer, tmp_path):
    model, tok = model_and_tokenizer
    with pytest.raises(ConfigError, match="empty"):
        evaluate(model, tok, [], "vqa", progress=False)
    res = evaluate(model, tok, make_batches(tok, 3, 2), "vqa", max_new_tokens=4, progress=False)
    pred_path, metrics_path = write_results(res, str(tmp_path / "out"))
    lines = [json.loads(l) for l in open(pred_path)]
    assert [l["id"] for l in lines] == ["q0", "q1", "q2"]
    assert json.load(open(metrics_path))["n_samples"] == 3


WORKER = textwrap.dedent('''
    import json, os, sys, torch, torch.distributed as dist
    import transformers; transformers.utils.logging.set_verbosity_error()
    from transformers import AutoTokenizer
    sys.path.insert(0, os.environ["TEST_DIR"])
    from test_evaluate import make_batches
    from scaling.config.model import model_config
    from scaling.models.builder import build_model
    from scaling.evaluation.evaluate import evaluate
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    torch.manual_seed(0)
    llm, enc = os.environ["LLM"], os.environ["ENC"]
    model = build_model(model_config(method="depalm", llm=llm, encoder=enc, frozen_dtype="fp32", map={"d_embed": 32}, finetune={"n_prompt": 2})).eval()
    tok = AutoTokenizer.from_pretrained(llm)
    # uneven shares: rank 0 has 4 samples, rank 1 has 3 (what a shard split gives)
    n, offset = (4, 0) if rank == 0 else (3, 4)
    import scaling.evaluation.evaluate as ev
    calls, score = [], ev.compute_metrics
    ev.compute_metrics = lambda *a, **k: calls.append(1) or score(*a, **k)
    class Loader(list):  # a loader that skipped samples it could not decode
        pass
    batches = Loader(make_batches(tok, n, 2, offset=offset))
    batches.skipped, batches.skipped_keys = rank + 1, [f"bad{rank}"]
    res = evaluate(model, tok, batches, "vqa", max_new_tokens=5, progress=False)
    json.dump({"rank": rank, "world": world, "predictions": res.predictions, "metrics": res.metrics,
               "scored_here": len(calls), "skipped": res.skipped, "skipped_keys": res.skipped_keys},
              open(os.path.join(os.environ["OUT"], f"rank{rank}.json"), "w"))
    dist.destroy_process_group()
''')


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.distributed
def test_two_gloo_ranks_cover_every_sample_exactly_once(model_and_tokenizer, backbones, tmp_path):
    model, tok = model_and_tokenizer
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    env = dict(os.environ, TEST_DIR=os.path.dirname(__file__), LLM=backbones["llama"], ENC=backbones["vit"], OUT=str(tmp_path),
               MASTER_ADDR="127.0.0.1", MASTER_PORT=str(_free_port()), OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", env["MASTER_PORT"], str(script)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    outs = [json.load(open(tmp_path / f"rank{r}.json")) for r in range(2)]
    assert sorted((o["rank"], o["world"]) for o in outs) == [(0, 2), (1, 2)]
    # every rank holds the gathered result: all 7 samples, once each, identical on both ranks
    assert outs[0]["predictions"] == outs[1]["predictions"]
    # scored once (rank 0: one JVM for METEOR, not one per rank), the metrics broadcast to every rank
    assert [o["scored_here"] for o in outs] == [1, 0] and outs[0]["metrics"] == outs[1]["metrics"]
    # the samples each rank's loader skipped are counted over both ranks
    assert [o["skipped"] for o in outs] == [3, 3] and outs[1]["skipped_keys"] == ["bad0", "bad1"]
    assert sorted(outs[0]["predictions"]) == sorted(f"q{i}" for i in range(7))
    # and equal to a single-process evaluation of the same samples
    ref = evaluate(model, tok, make_batches(tok, 7, 3), "vqa", max_new_tokens=5, progress=False)
    assert outs[0]["predictions"] == ref.predictions


def test_predictions_are_saved_before_scoring(model_and_tokenizer, tmp_path, monkeypatch):
    # a scoring failure (no Java, METEOR out of memory) must not lose the generations
    model, tok = model_and_tokenizer

    def no_java(*args, **kwargs):
        raise MetricsError("java not found")

    monkeypatch.setattr(evaluate_module, "compute_metrics", no_java)
    out = tmp_path / "out"
    with pytest.raises(MetricsError, match="java"):
        evaluate(model, tok, make_batches(tok, 3, 2), "vqa", max_new_tokens=4, progress=False,
                 save_predictions=lambda p, r: write_predictions(p, r, str(out)))
    lines = [json.loads(l) for l in open(out / "predictions.jsonl")]
    assert [l["id"] for l in lines] == ["q0", "q1", "q2"] and lines[0]["references"] == ["red", "red", "blue"]


def test_skipped_samples_are_recorded_with_the_score(model_and_tokenizer, tmp_path):
    model, tok = model_and_tokenizer

    class Loader(list):
        skipped, skipped_keys = 2, ["shard-0.tar:k7 (truncated image)", "shard-0.tar:k9 (truncated image)"]

    res = evaluate(model, tok, Loader(make_batches(tok, 3, 2)), "vqa", max_new_tokens=4, progress=False)
    _, metrics_path = write_results(res, str(tmp_path / "out"))
    saved = json.load(open(metrics_path))
    assert saved["n_samples"] == 3 and saved["skipped"] == 2 and saved["skipped_keys"] == Loader.skipped_keys
    assert saved["accuracy_counting_skipped_as_wrong"] == pytest.approx(saved["metrics"]["accuracy"] * 3 / 5)
    assert "2 sample(s)" in res.skip_warning() and "NOT in this score" in res.skip_warning()
    clean = evaluate(model, tok, make_batches(tok, 3, 2), "vqa", max_new_tokens=4, progress=False)
    assert clean.skipped == 0 and clean.skip_warning() is None and "skipped_keys" not in clean.counts()


def test_a_generation_opening_with_a_newline_is_not_an_empty_answer():
    assert postprocess("\n yes\nno") == "yes"
    assert postprocess(" two dogs. \n a cat") == "two dogs."
