"""Start-up: help, listings and refusals answer without building models or importing what they do not need.
``scaling methods`` caches its counts per backbone pair (a second listing imports neither torch nor
transformers and prints the same table); ``convert --to peft`` of a method without LoRA refuses before
importing peft. No timing is asserted: what is imported is."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

HANG_TIMEOUT_S = 900
PROBE = ("import sys, json; from scaling.cli.main import main; rc = main({argv!r}); "
         "print(json.dumps({{'rc': rc, 'mods': sorted(m for m in ('torch', 'transformers', 'peft') if m in sys.modules)}}))")


def _probe(argv, tmp_path):
    env = dict(os.environ, XDG_CACHE_HOME=str(tmp_path / "xdg"))
    env.pop("SCALING_NO_PARAM_CACHE", None)
    proc = subprocess.run([sys.executable, "-c", PROBE.format(argv=argv)], capture_output=True, text=True, env=env,
                          timeout=HANG_TIMEOUT_S)
    assert proc.returncode == 0, proc.stderr[-3000:]
    *out, last = proc.stdout.strip().splitlines()
    return json.loads(last), "\n".join(out), proc.stderr


@pytest.mark.slow
def test_methods_counts_are_cached_per_backbone_pair(tmp_path):
    first, table1, _ = _probe(["methods"], tmp_path)  # as documented: LLaMA-7B + CLIP-L/14 shapes
    assert first["rc"] == 0 and "transformers" in first["mods"]  # counted by building the presets
    assert "depalm " in table1 and "17,8" in table1  # DePALM's 17.89M (README)
    assert os.path.isfile(tmp_path / "xdg" / "scaling" / "param_counts.json")
    second, table2, _ = _probe(["methods"], tmp_path)
    assert second == {"rc": 0, "mods": []} and table2 == table1  # from the cache, same table, no model library
    show, text, _ = _probe(["methods", "--show", "depalm"], tmp_path)
    assert show == {"rc": 0, "mods": []} and "trainable parameters with llama-7b + clip-vit-l14" in text
    uncached, text2, _ = _probe(["methods", "--show", "depalm", "--no-cache"], tmp_path)
    assert "transformers" in uncached["mods"] and text2 == text
    # another configuration of the pair is another key: counted, and a different count
    other, text3, _ = _probe(["methods", "--show", "depalm", "map.n_queries=16"], tmp_path)
    assert "transformers" in other["mods"] and text3 != text


def test_help_and_refusals_import_no_model_library(tmp_path):
    res, _, err = _probe(["methods", "--show", "depalmm"], tmp_path)
    assert res == {"rc": 2, "mods": []} and "unknown method 'depalmm'" in err
    helped = subprocess.run([sys.executable, "-c", "import sys; from scaling.cli.main import build_parser; "
                             "h = build_parser().format_help(); print('torch' in sys.modules, 'methods' in h)"],
                            capture_output=True, text=True, timeout=HANG_TIMEOUT_S)
    assert helped.stdout.split() == ["False", "True"], helped.stderr[-2000:]


@pytest.mark.slow
def test_convert_to_peft_refuses_a_method_without_lora_before_importing_peft(tmp_path):
    run = tmp_path / "run"
    cfg = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "configs", "cpu_tiny.yaml")
    train = subprocess.run([sys.executable, "-m", "scaling", "train", "--config", cfg, f"train.output_dir={run}",
                            "train.max_steps=1", "train.eval_every=0", "train.progress_bar=false", "train.tensorboard=false"],
                           capture_output=True, text=True, timeout=HANG_TIMEOUT_S)
    assert train.returncode == 0, train.stderr[-3000:]
    res, _, err = _probe(["convert", str(run), "--to", "peft", str(tmp_path / "peft")], tmp_path)
    assert res["rc"] == 2 and "peft" not in res["mods"] and "no LoRA weights" in err
