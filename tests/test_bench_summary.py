"""launch/bench_gpu.sh's table (scaling.bench.summary): every figure of issue 18 from the run's JSON files,
relative to the plain step, with missing packages and failed runs named instead of crashing the table."""

import json

from scaling.bench.summary import main, summary


def _step(ms, batch=32):
    return {"step_ms": ms, "samples_s": batch / ms * 1e3, "tflops": 100.0, "peak_gb": 40.0}


def _gen(ms, batch=64):
    return {"total_ms": ms, "samples_s": batch / ms * 1e3, "prefill_ms": ms / 10, "decode_ms_per_step": ms / 25}


def test_summary_reports_every_figure(tmp_path, capsys):
    cfg = {"gpu": "NVIDIA H200"}
    files = {
        "depalm": {"config": cfg, "plain": _step(400), "ours": _step(200), "ours_fp8": _step(160),
                   "fp8_effect": {"loss_rel_diff": 1e-3, "grad_cosine": 0.999}},
        "depalm_cached": {"config": cfg, "plain": _step(300), "ours": _step(120)},
        "depalm_liger": {"config": cfg, "skipped": {"plain_liger": "liger-kernel not installed (pip install liger-kernel)"}},
        "depalm_torchao": {"config": cfg, "ours": _step(250), "ours_torchao_fp8": _step(200)},
        "limber_all": {"config": cfg, "ours": _step(800)},
        "generate": {"config": {**cfg, "batch": 64, "prompt_len": 6, "new_tokens": 20, "prefix_tokens": 38},
                     "hf": _gen(700), "ours_dynamic": _gen(300), "ours_static": _gen(200), "best": "ours_static",
                     "ratio_samples_s": 3.5, "tokens_equal_hf": 1.0},
    }
    for name, res in files.items():
        (tmp_path / f"{name}.json").write_text(json.dumps(res))
    (tmp_path / "ours_profile.txt").write_text("table")
    text = summary(str(tmp_path))
    assert "depalm ours" in text and "2.00x" in text  # 200 ms vs the plain 400 ms
    assert "depalm_cached ours" in text and "2.50x" in text  # vs its own plain step
    assert "plain_liger" in text and "liger-kernel not installed" in text
    assert "our FP8 / torchao row-wise float8 (samples/s): 1.25x" in text
    assert "LiMBeR(all) / DePALM step time: 4.00x" in text
    assert "generate ours_static" in text and "3.50x (target >= 3x)" in text and "38-token prefix" in text
    assert "plain_profile.txt missing" in text
    (tmp_path / "generate.json").unlink()
    (tmp_path / "depalm_cached.json").write_text("{truncated")
    assert main([str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "generation (failed: see generate.log)" in out and "depalm_cached" in out and "(failed" in out
