"""launch/bench_gpu.sh's table (scaling.bench.summary): every figure of issues 18/26 from the run's JSON files,
the headline comparisons first, relative to the plain step, with missing packages, runs not reached and
failed runs named instead of crashing the table."""

import json

from scaling.bench.summary import main, summary


def _step(ms, batch=32):
    return {"step_ms": ms, "samples_s": batch / ms * 1e3, "tflops": 100.0, "peak_gb": 40.0}


def _gen(ms, batch=64):
    return {"total_ms": ms, "samples_s": batch / ms * 1e3, "prefill_ms": ms / 10, "decode_ms_per_step": ms / 25}


def _write(tmp_path, files):
    for name, res in files.items():
        (tmp_path / f"{name}.json").write_text(json.dumps(res))


def test_summary_reports_every_figure(tmp_path, capsys):
    cfg = {"gpu": "NVIDIA H200"}
    _write(tmp_path, {
        "depalm": {"config": cfg, "plain": _step(400), "ours": _step(200)},
        "depalm_liger": {"config": cfg, "plain_liger": _step(250)},
        "depalm_fp8": {"config": cfg, "ours": _step(200), "ours_fp8": _step(160),
                       "fp8_effect": {"loss_rel_diff": 1e-3, "grad_cosine": 0.999}},
        "depalm_cached": {"config": cfg, "plain": _step(300), "ours": _step(120)},
        "depalm_torchao": {"config": cfg, "ours": _step(250), "ours_torchao_fp8": _step(200),
                           "notes": {"ours_torchao_fp8": "torch.compile per layer; still unequal: ..."}},
        "limber_all": {"config": cfg, "ours": _step(800)},
        "generate": {"config": {**cfg, "batch": 64, "prompt_len": 6, "new_tokens": 20, "prefix_tokens": 38,
                                "decode_timing": "CUDA events at each lm_head call"},
                     "hf": _gen(700), "ours_dynamic": _gen(300), "ours_static": _gen(200), "best": "ours_static",
                     "ratio_samples_s": 3.5, "target_ratio": 3.0, "tokens_equal_hf": 1.0, "static_equals_dynamic": True},
        "generate_graph": {"config": {**cfg, "batch": 64, "prompt_len": 6, "new_tokens": 20},
                           "ours_static_graph": _gen(140), "graph_equals_dynamic": True},
    })
    (tmp_path / "ours_profile.txt").write_text("table")
    text = summary(str(tmp_path))
    head = text.split("\n\n")[0]  # the headline block comes first
    assert "ours / plain (samples/s): 2.00x (target >= 1.6x: met)" in head
    assert "ours / plain+Liger-Kernel (samples/s): 1.25x (target >= 1x: met)" in head
    assert "ours (ours_static) / HF generate (samples/s): 3.50x (target >= 3x: met)" in head
    assert "(static cache, CUDA graph) / HF generate (samples/s): 5.00x" in head
    assert "depalm_cached ours" in text and "2.50x" in text  # vs its own plain step
    assert "our FP8 / torchao row-wise float8 (samples/s): 1.25x" in text
    assert "note (ours_torchao_fp8): torch.compile per layer" in text
    assert "LiMBeR(all) / DePALM step time: 4.00x" in text
    assert "generate ours_static_graph" in text and "38-token prefix" in text and "CUDA events" in text
    assert "CUDA-graph decode tokens = dynamic cache's: True" in text
    assert "plain_profile.txt missing" in text


def test_summary_names_skipped_failed_and_unreached_runs(tmp_path, capsys):
    cfg = {"gpu": "NVIDIA H100"}
    _write(tmp_path, {
        "depalm": {"config": cfg, "plain": _step(400), "ours": _step(300)},
        "depalm_liger": {"config": cfg, "skipped": {"plain_liger": "liger-kernel not installed (pip install liger-kernel)"}},
        "generate_graph": {"config": cfg, "skipped": {"ours_static_graph": "CUDA graphs need --device cuda"}},
    })
    (tmp_path / "depalm_cached.json").write_text("{truncated")
    (tmp_path / "depalm_cached.log").write_text("Traceback ...")
    (tmp_path / "limber_all.notrun").write_text("the time budget of its part ran out (BUDGET_S=285 s)")
    assert main([str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "ours / plain (samples/s): 1.33x (target >= 1.6x: NOT met)" in out
    assert "ours / plain+Liger-Kernel: n/a (liger-kernel not installed" in out
    assert "generation, ours / HF generate: n/a" in out
    assert "depalm_cached" in out and "(failed: see depalm_cached.log)" in out
    assert "(not run: the time budget of its part ran out (BUDGET_S=285 s))" in out
    assert "generate                           (not run yet)" in out  # part 1's file, absent from part 2's folder
    assert "generate ours_static_graph         skipped: CUDA graphs need --device cuda" in out
