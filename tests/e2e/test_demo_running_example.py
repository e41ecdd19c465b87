"""The docs' running example, configs/demo_caption.yaml, command after command as its header lists them:
``scaling demo --export-backbones demo`` (here with tiny pretraining budgets: the export code path is the
same, only the step counts are smaller), then train → eval → predict → convert → report on the exported
real Hugging Face folders (a LLaMA with a tokenizer, a ViT) and the demo's shards, on CPU, offline."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shlex

import pytest

from scaling.cli.main import main

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CONFIG = os.path.join(REPO, "configs", "demo_caption.yaml")
# what the test adds to a documented command to stay small (a step budget, short generations)
SMALL = {
    "train": ["train.max_steps=3", "train.save_every=3", "train.global_batch=16", "train.micro_batch=16"],
    "eval": ["--max-new-tokens", "4", "--no-meteor", "--batch-size", "16"],
    "predict": ["--max-new-tokens", "4"],
}


def documented_commands() -> list[list[str]]:
    cmds = []
    for line in open(CONFIG):
        if not line.startswith("#"):
            break
        text = line[1:].split("#")[0].strip()
        if text.startswith("scaling "):
            cmds.append(shlex.split(text)[1:])
    return cmds


@pytest.mark.slow
def test_documented_running_example(tmp_path, monkeypatch, capsys):
    from scaling.demo.export import export_backbones
    from scaling.demo.run import QUICK

    cmds = documented_commands()
    assert [c[0] for c in cmds] == ["demo", "train", "eval", "predict", "convert", "report"]
    assert cmds[0][:3] == ["demo", "--export-backbones", "demo"]
    monkeypatch.chdir(tmp_path)
    tiny = dataclasses.replace(QUICK, n_train=40, n_test=8, questions_per_image=1, encoder_steps=2, encoder_pool=32,
                               lm_steps=2, lm_batch=8, workers=0)
    out = export_backbones("demo", tiny, str(tmp_path / "cache"), progress=False, echo=lambda m: None)
    for name in ("llm", "vit"):
        assert os.path.isfile(os.path.join("demo", name, "config.json"))
    assert os.path.isfile("demo/llm/tokenizer.json") or os.path.isfile("demo/llm/tokenizer_config.json")
    assert os.path.isfile("demo/shards/caption/index.json") and os.path.isfile("demo/images/test0.png")
    assert set(out) >= {"llm", "vit", "shards", "images"}

    results = {}
    for cmd in cmds[1:]:
        argv = [CONFIG if a == "configs/demo_caption.yaml" else a for a in cmd] + SMALL.get(cmd[0], [])
        if cmd[0] in ("eval", "predict", "report"):
            argv.append("--json")
        assert main(argv) == 0, (cmd, capsys.readouterr().err[-3000:])
        captured = capsys.readouterr()
        results[cmd[0]] = captured
    assert "training done: 3/3 steps" in results["train"].out
    assert "scaling eval --checkpoint runs/demo_caption --split test" in results["train"].out
    ev = json.loads(results["eval"].out.strip().splitlines()[-1])
    assert ev["n_samples"] == 8 and "CIDEr" in ev["metrics"]
    import glob

    assert glob.glob("runs/demo_caption/eval/step_*3_test/metrics.json")  # scaling eval's default folder
    pred = json.loads(results["predict"].out.strip().splitlines()[-1])
    assert pred["file"].endswith("test0.png") and isinstance(pred["prediction"], str)
    assert os.path.isfile("demo_caption.safetensors"), "the docs export the adapter outside the run folder"
    rep = json.loads(results["report"].out.strip().splitlines()[-1])
    assert rep["n_runs"] == 1 and rep["benchmarks"][0]["metric"] == "CIDEr"
    assert rep["best"]["depalm|demo-caption"]["mean"] == pytest.approx(ev["metrics"]["CIDEr"])
    assert not re.search(r"no `scaling eval` scores|no evaluation scores", results["report"].err)
