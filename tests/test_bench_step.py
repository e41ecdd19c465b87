"""`scaling bench` on CPU at tiny shapes: the plain reference, the project's fused step and its FP8
variant all run in one process, and the FP8 effect on one batch is reported (timings on CPU mean
nothing; the GPU figures are in the README)."""

import json
import math

import pytest

from scaling.cli.main import main

pytestmark = pytest.mark.slow


def test_bench_runs_plain_fused_and_fp8_and_reports_the_fp8_effect(capsys):
    rc = main(["bench", "--device", "cpu", "--llm-shape", "tiny-llama", "--encoder-shape", "tiny-vit", "--dtype", "fp32",
               "--batch", "2", "--text-len", "6", "--steps", "1", "--warmup", "1", "--fp8", "--json"])
    assert rc == 0
    res = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    for name in ("plain", "ours", "ours_fp8"):
        assert res[name]["step_ms"] > 0 and math.isfinite(res[name]["loss"]), name
    assert res["config"]["fused_llm"]["fused_layers"] == res["config"]["fused_llm"]["fp8_layers"] >= 2
    effect = res["fp8_effect"]
    assert 0 < effect["loss_rel_diff"] < 0.01
    assert 0.95 < effect["grad_cosine"] < 1.0
    assert res["ratio_fp8_samples_s"] > 0


def test_bench_refuses_fp8_without_the_fused_llm():
    with pytest.raises(ValueError, match="no-fused-llm"):
        main(["bench", "--device", "cpu", "--llm-shape", "tiny-llama", "--encoder-shape", "tiny-vit", "--dtype", "fp32",
              "--no-fused-llm", "--fp8"])
