"""Planner pieces on a hand-written profile (no model is built): GPU table, ZeRO accounting, search, launch line."""

from __future__ import annotations

import pytest

from scaling.config.base import ConfigError
from scaling.plan import launch, search
from scaling.plan.gpus import GIB, GPUS, get_gpu, match_gpu
from scaling.plan.memory import Setting, breakdown, model_states


def test_gpu_table_and_custom_gpu():
    assert {"v100-16", "v100-32", "a100-40", "a100-80", "h100-80", "h200"} <= set(GPUS)
    assert not GPUS["v100-32"].bf16 and GPUS["a100-80"].bf16 and GPUS["h100-80"].fp8 and not GPUS["a100-80"].fp8
    g = get_gpu(None, memory_gb=48, peak_tflops=181)
    assert abs(g.memory_bytes - 48e9) < 1e6 and g.peak_tflops["bf16"] == 181
    with pytest.raises(ConfigError, match="valid"):
        get_gpu("v100-64")
    with pytest.raises(ConfigError, match="both"):
        get_gpu(None, memory_gb=48)



class _Props:  # what torch.cuda.get_device_properties(0) reports
    def __init__(self, total_gib: float, major: int, minor: int):
        self.total_memory, self.major, self.minor = int(total_gib * GIB), major, minor


@pytest.mark.parametrize("device_name, total_gib, arch, want", [
    ("Tesla V100-SXM2-16GB", 15.77, (7, 0), "v100-16"),
    ("Tesla V100-SXM2-32GB", 31.74, (7, 0), "v100-32"),
    ("Tesla V100-PCIE-32GB", 31.75, (7, 0), "v100-32"),
    ("NVIDIA A100-SXM4-40GB", 39.39, (8, 0), "a100-40"),
    ("NVIDIA A100 80GB PCIe", 79.15, (8, 0), "a100-80"),
    ("NVIDIA H100 80GB HBM3", 79.11, (9, 0), "h100-80"),
    ("NVIDIA H200", 139.8, (9, 0), "h200"),
])
def test_train_check_recognises_the_table_gpus_by_name_and_memory(device_name, total_gib, arch, want):
    """``scaling train --check`` on a CUDA machine plans for its GPU (``match_gpu`` of the device's name/properties)."""
    assert match_gpu(device_name, _Props(total_gib, *arch)) == (want, None, None, arch[0] * 10 + arch[1])


@pytest.mark.parametrize("device_name, total_gib, arch, peak", [
    ("NVIDIA H100 NVL", 93.6, (9, 0), 989.0),            # an H100 of another memory size: not the 80 GB entry
    ("NVIDIA GeForce RTX 4090", 23.6, (8, 9), 360.0),
    ("NVIDIA A10", 22.1, (8, 6), 150.0),                  # "A10" is not an A100
])
def test_other_gpus_are_planned_from_their_memory_and_generation(device_name, total_gib, arch, peak):
    key, memory_gb, peak_tflops, sm = match_gpu(device_name, _Props(total_gib, *arch))
    assert key is None and memory_gb == pytest.approx(total_gib * GIB / 1e9) and peak_tflops == peak
    assert sm == arch[0] * 10 + arch[1]
    gpu = get_gpu(key, memory_gb, peak_tflops, arch=sm)  # as `train --check` then plans it
    assert gpu.memory_bytes == pytest.approx(total_gib * GIB, rel=1e-6) and gpu.fp8 == (sm >= 89)


def test_a_custom_gpu_of_the_v100_generation_is_planned_without_bf16():
    """``--gpu-arch 70`` (e.g. a TITAN V, or what `train --check` reads from an unknown sm_70 card): fp16, no
    FlashAttention, as on the V100 of the table."""
    gpu = get_gpu(None, memory_gb=12, peak_tflops=110, arch=70)
    assert not gpu.bf16 and not gpu.flash_attention and not gpu.fp8
    assert get_gpu(None, memory_gb=12, peak_tflops=110).bf16  # the default: sm_80

def test_zero3_partitions_frozen_weights_and_offload_moves_states(make_profile):
    p = make_profile()
    s0 = model_states(p, Setting("bf16", 8, 1, 2, False, False), 16, 8)
    s3 = model_states(p, Setting("bf16", 8, 1, 3, False, False), 16, 8)
    s3o = model_states(p, Setting("bf16", 8, 1, 3, True, False), 16, 8)
    assert s0["gpu"]["frozen weights"] == 2 * p.frozen_params
    assert s3["gpu"]["frozen weights"] == 4 * p.largest_layer_params + 2 * p.frozen_params // 16
    assert s3o["gpu"]["frozen weights"] == 4 * p.largest_layer_params and s3o["gpu"]["trainable states"] == 0
    assert s3o["cpu"]["frozen weights"] == 2 * p.frozen_params // 2


def test_checkpointing_keeps_layer_inputs_only(make_profile):
    p = make_profile()
    off = breakdown(p, Setting("bf16", 8, 1, 2, False, False), 8, 8, 70)
    on = breakdown(p, Setting("bf16", 8, 1, 2, False, True), 8, 8, 70)
    assert on["gpu"]["activations"] < off["gpu"]["activations"] / 10
    assert on["peak"] < off["peak"]


def test_search_keeps_global_batch_and_names_what_overflowed(make_profile):
    p = make_profile(layers=32, per_layer=0.4 * GIB)  # 0.4 GiB per layer at micro-batch 8
    gpu = GPUS["v100-32"]
    best, cands = search.search(p, gpu, 16, 8, 128, 0.35, 100.0)
    s = best.setting
    assert s.micro_batch * s.accumulation * 16 == 128
    assert best.memory["peak"] <= gpu.memory_bytes * (1 - search.MARGIN)
    rejected = search.rejected_summary(cands, best)
    assert rejected and all("largest part" in c.reason for c in rejected)
    assert any("activations" in c.reason for c in rejected)
    assert {c.setting.precision for c in cands} == {"fp16"}  # V100: no bf16


def test_launch_line_uses_the_shipped_ds_configs():
    s = Setting("fp16", 8, 1, 2, False, True)
    lines = launch.launch_lines("configs/coco_depalm.yaml", s, 2, 8)
    assert "ds_configs/zero2_fp16.json" in lines["sbatch"] and "--nodes=2" in lines["sbatch"]
    assert "train.gradient_checkpointing=true" in lines["check"] and "--world-size 16" in lines["check"]
    assert lines["deepspeed"].startswith("DS_CONFIG=ds_configs/zero2_fp16.json bash launch/deepspeed_train.sh")
    import os

    for path in launch.DS_CONFIGS.values():
        assert os.path.isfile(path), path
    one = launch.launch_lines("c.yaml", Setting("bf16", 4, 2, 0, False, False), 1, 4)
    assert "train.deepspeed=null" in one["single_node"] and "NGPUS=4" in one["single_node"]


def test_fused_loss_only_from_sm80(make_profile):
    from scaling.kernels import dispatch  # noqa: F401 - the constant mirrors dispatch's matmul-heavy rule
    from scaling.plan.memory import FUSED_LOSS_MIN_ARCH

    p = make_profile()
    s = Setting("fp16", 32, 1, 2, False, False)
    assert not breakdown(p, s, 1, 1, 70)["fused_loss"] and breakdown(p, s, 1, 1, 80)["fused_loss"]
    assert FUSED_LOSS_MIN_ARCH == 80
    import inspect

    assert "(8, 0)" in inspect.getsource(dispatch.use_triton)


def test_mfu_from_a_number_a_bench_output_or_a_train_summary(tmp_path, make_profile):
    import json

    from scaling.plan.timing import DEFAULT_MFU, read_mfu

    p = make_profile()
    gpu = GPUS["h100-80"]
    assert read_mfu(None, p, gpu)[0] == DEFAULT_MFU
    assert read_mfu("0.42", p, gpu)[0] == 0.42
    bench = tmp_path / "bench.json"
    bench.write_text(json.dumps({"results": {"plain": {"mfu": 0.31}}}))
    assert read_mfu(str(bench), p, gpu)[0] == 0.31
    summary = tmp_path / "train_summary.json"
    summary.write_text(json.dumps({"samples_seen": 1000, "train_seconds": 10.0, "n_gpus": 2}))
    mfu, source = read_mfu(str(summary), p, gpu)
    assert abs(mfu - 2.7e12 * 1000 / (10.0 * 2 * 989e12)) < 1e-9 and "1000 samples" in source
    with pytest.raises(ConfigError, match="neither a number nor a file"):
        read_mfu("fast", p, gpu)
    with pytest.raises(ConfigError, match=r"\(0, 1\]"):
        read_mfu("1.5", p, gpu)


@pytest.mark.parametrize("f_max, kept", [(0.5, 8), (1.0, 16)])
def test_r_rand_is_planned_with_its_largest_training_batch(f_max, kept):
    """R-rand keeps f_max of the patch tokens in some training batches (probability >= p_max), fewer in the others:
    memory is planned for those largest batches, not for every token (the tiny ViT has 16 patches)."""
    from scaling.config import load_config
    from scaling.plan.profile import build_profile

    cfg = load_config(None, ["model.method=depalm-r-rand", "model.llm=tiny-llama", "model.encoder=tiny-vit",
                             f"model.map.f_max={f_max}"])
    p = build_profile(cfg)
    assert cfg.model.finetune.n_prompt == 1
    assert p.prefix_len == 1 + 1 + kept  # the prompt token, CLS, the kept patches
    assert any(f"f_max = {f_max:g}" in note for note in p.notes), p.notes
