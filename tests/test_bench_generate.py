"""`scaling bench --generate --compare hf` on CPU at tiny shapes: the project's generate (dynamic and
static KV cache) and Hugging Face generate run in one process on the same prefix; both rows report
samples/s, prefill time and ms per decode step (timed directly at each lm_head call), and the greedy tokens
agree. Timings on CPU mean nothing: whether ours is faster is a figure of the benchmark (``target_met``),
never asserted here."""

import json

import pytest
import torch

from scaling.cli.main import main

pytestmark = pytest.mark.slow

TINY = ["--device", "cpu", "--llm-shape", "tiny-llama", "--encoder-shape", "tiny-vit", "--dtype", "fp32"]


def test_bench_generate_compares_with_hugging_face(capsys):
    rc = main(["bench", "--generate", "--compare", "hf", *TINY, "--batch", "4", "--text-len", "5", "--new-tokens", "5",
               "--steps", "1", "--warmup", "1", "--json"])
    assert rc == 0
    res = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    for name in ("hf", "ours_dynamic", "ours_static"):
        row = res[name]
        assert row["samples_s"] > 0 and row["total_ms"] > 0, name
        assert row["decode_steps"] == 4, name  # 5 tokens: the prefill's, then 4 decode steps, each timed
        assert row["prefill_ms"] > 0 and row["decode_ms_per_step"] > 0, name
        assert row["prefill_ms"] + 4 * row["decode_ms_per_step"] <= row["total_ms"] * 1.01, name
    assert "ours_static_graph" not in res
    assert res["static_equals_dynamic"] is True
    assert res["tokens_equal_hf"] >= 0.9  # same prefix, same greedy decoding (HF only forbids an early EOS)
    best = max(("ours_dynamic", "ours_static"), key=lambda k: res[k]["samples_s"])
    assert res["best"] == best
    assert res["ratio_samples_s"] == round(res[best]["samples_s"] / res["hf"]["samples_s"], 3)
    assert res["target_ratio"] == 3.0 and res["target_met"] == (res["ratio_samples_s"] >= 3.0)
    assert res["config"]["prefix_tokens"] > 0 and "perf_counter" in res["config"]["decode_timing"]


def test_compile_decode_is_its_own_run_and_skipped_on_cpu(capsys):
    assert main(["bench", "--generate", "--compare", "none", *TINY, "--batch", "2", "--text-len", "3",
                 "--new-tokens", "3", "--steps", "1", "--warmup", "0", "--compile-decode", "--json"]) == 0
    res = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert "CUDA graphs need --device cuda" in res["skipped"]["ours_static_graph"]
    assert not {"hf", "ours_dynamic", "ours_static", "ours_static_graph"} & set(res)


def test_bench_generate_human_table(capsys):
    assert main(["bench", "--generate", *TINY, "--batch", "2", "--text-len", "3", "--new-tokens", "3",
                 "--steps", "1", "--warmup", "0"]) == 0
    out = capsys.readouterr().out
    assert "decode_ms_per_step" in out and "speed-up vs HF generate" in out


def test_bench_generate_refuses_what_hf_cannot_run():
    with pytest.raises(ValueError, match="first layer"):
        main(["bench", "--generate", "--compare", "hf", *TINY, "--method", "epalm", "--steps", "1"])
    with pytest.raises(SystemExit, match="--generate"):
        main(["bench", "--compare", "hf", *TINY])


def test_compiled_decode_is_never_used_on_cpu(backbones, monkeypatch):
    from scaling.config.model import model_config
    from scaling.models.builder import build_model
    from scaling.models.tiny import tiny_media

    model = build_model(model_config(method="depalm", llm=backbones["llama"], encoder=backbones["vit"],
                                     frozen_dtype="fp32", map={"d_embed": 32})).eval()
    model.compile_decode = True
    calls = []
    monkeypatch.setattr(torch, "compile", lambda *a, **k: calls.append(1))
    ids = torch.randint(5, 90, (2, 4))
    model.generate(ids, max_new_tokens=3, kv_cache="static", **tiny_media("vit"))
    assert not calls
