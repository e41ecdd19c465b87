"""`scaling bench --generate --compare hf` on CPU at tiny shapes: the project's generate (dynamic and
static KV cache) and Hugging Face generate run in one process on the same prefix; both rows report
samples/s and ms per decode step, and the greedy tokens agree (timings on CPU mean nothing)."""

import json

import pytest
import torch

from scaling.cli.main import main

pytestmark = pytest.mark.slow

TINY = ["--device", "cpu", "--llm-shape", "tiny-llama", "--encoder-shape", "tiny-vit", "--dtype", "fp32"]


def test_bench_generate_compares_with_hugging_face(capsys):
    rc = main(["bench", "--generate", "--compare", "hf", *TINY, "--batch", "4", "--text-len", "5", "--new-tokens", "5",
               "--steps", "1", "--warmup", "1", "--compile-decode", "--json"])
    assert rc == 0
    res = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    for name in ("hf", "ours_dynamic", "ours_static"):
        assert res[name]["samples_s"] > 0 and res[name]["total_ms"] > 0, name
        assert res[name]["decode_ms_per_step"] >= 0 and res[name]["prefill_ms"] > 0, name
    assert "ours_static_graph" not in res  # the CUDA-graph capture is never used on CPU
    assert res["static_equals_dynamic"] is True
    assert res["tokens_equal_hf"] >= 0.9  # same prefix, same greedy decoding (HF only forbids an early EOS)
    assert res["ratio_samples_s"] > 0 and res["best"].startswith("ours_")
    assert res["config"]["prefix_tokens"] > 0


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
