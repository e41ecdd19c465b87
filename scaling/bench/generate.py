"""Evaluation-generation benchmark: the project's ``generate`` vs Hugging Face ``generate``, one process.

Both run greedy decoding of ``new_tokens`` tokens for a left-padded batch of prompts on the same
random-weight backbones (built at real shapes from a shape name), with the encoder and the mapper in
the timed call. The Hugging Face side is what a user would write: encode → the method's prefix →
``torch.cat`` with the text embeddings → ``llm.generate(inputs_embeds=..., attention_mask=...)``
(its default dynamic cache). It needs a method whose perception enters at the first layer (DePALM,
LiMBeR, MAPL, blind); inner injection and cross-attention have no Hugging Face counterpart.

Reported per variant: ``total_ms`` of one ``generate`` call, ``samples_s``, ``prefill_ms`` (a call
that generates one token: encoder + prefix + prompt pass) and ``decode_ms_per_step``
(``(total - prefill) / (new_tokens - 1)``).
"""

from __future__ import annotations

import time

import torch

from scaling.bench.step import _sync, random_media
from scaling.config.model import model_config
from scaling.models.builder import build_model

HF_METHODS = ("depalm", "limber-1", "limber-all", "mapl", "blind")
DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}


def _timed(fn, device, warmup: int, repeats: int) -> tuple[float, torch.Tensor]:
    out = None
    for _ in range(warmup):
        out = fn()
    _sync(device)
    t = time.perf_counter()
    for _ in range(repeats):
        out = fn()
    _sync(device)
    return (time.perf_counter() - t) / repeats, out


def run_generate_benchmark(
    llm_shape: str = "llama-7b",
    encoder_shape: str = "clip-vit-l14",
    method: str = "depalm",
    batch: int = 64,
    prompt_len: int = 6,
    new_tokens: int = 20,
    device: str = "cuda",
    dtype: str = "bf16",
    compare_hf: bool = True,
    warmup: int = 1,
    repeats: int = 3,
    compile_decode: bool = False,
) -> dict:
    """Time ``generate`` calls; returns {"config", "hf", "ours_dynamic", "ours_static"[, "ours_static_graph"],
    "ratio_samples_s", "tokens_equal_hf"}."""
    if new_tokens < 2:
        raise ValueError("--new-tokens must be >= 2 (the decode time per step is measured past the first token)")
    if compare_hf and method not in HF_METHODS:
        raise ValueError(f"--compare hf needs a method whose tokens enter at the first layer {HF_METHODS}, got {method!r}")
    dev = torch.device(device)
    cfg = model_config(method=method, llm=llm_shape, encoder=encoder_shape, frozen_dtype=dtype, fused_llm="off")
    torch.manual_seed(0)
    model = build_model(cfg, device=dev).eval()
    info = model.extractor.encoder.info if model.extractor is not None else None
    media = random_media(info, batch, dev, DTYPES[dtype])
    vocab = model.layout.embed_tokens.weight.shape[0]
    ids = torch.randint(5, vocab, (batch, prompt_len), device=dev)
    mask = torch.ones_like(ids)
    for i in range(batch):  # left padding: prompts of prompt_len, prompt_len-1, ... tokens
        mask[i, : min(i % 3, prompt_len - 1)] = 0
    ids = ids * mask

    def ours(kind, n):
        return lambda: model.generate(ids, mask, max_new_tokens=n, kv_cache=kind, **media)

    def row(fn_full, fn_one):
        full, out = _timed(fn_full, dev, warmup, repeats)
        one, _ = _timed(fn_one, dev, warmup, repeats)
        return {"total_ms": round(full * 1e3, 3), "samples_s": round(batch / full, 3), "prefill_ms": round(one * 1e3, 3),
                "decode_ms_per_step": round(max(full - one, 0.0) / (new_tokens - 1) * 1e3, 3)}, out

    res: dict = {"config": {"method": method, "llm": llm_shape, "encoder": encoder_shape, "batch": batch,
                            "prompt_len": prompt_len, "new_tokens": new_tokens, "dtype": dtype, "device": str(dev),
                            "gpu": torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu"}}
    with torch.no_grad():
        if compare_hf:
            def hf(n):
                def call():
                    mapped = model.encode(**media)
                    prefix, _ = model._prefix(mapped, batch)
                    embeds, full_mask, _ = model._inputs(ids, mask, prefix)
                    return model.llm.generate(inputs_embeds=embeds, attention_mask=full_mask, max_new_tokens=n,
                                              min_new_tokens=n, do_sample=False, num_beams=1, pad_token_id=0)
                return call
            res["hf"], hf_tokens = row(hf(new_tokens), hf(1))
            res["config"]["prefix_tokens"] = int(model._prefix(model.encode(**media), batch)[0].shape[1])
        res["ours_dynamic"], ours_tokens = row(ours("dynamic", new_tokens), ours("dynamic", 1))
        res["ours_static"], static_tokens = row(ours("static", new_tokens), ours("static", 1))
        res["static_equals_dynamic"] = bool(torch.equal(static_tokens, ours_tokens))
        if compile_decode and dev.type == "cuda":
            model.compile_decode = True
            res["ours_static_graph"], graph_tokens = row(ours("static", new_tokens), ours("static", 1))
            res["graph_equals_dynamic"] = bool(torch.equal(graph_tokens, ours_tokens))
            model.compile_decode = False
    if compare_hf:
        best = max((k for k in res if k.startswith("ours_")), key=lambda k: res[k]["samples_s"])
        res["best"] = best
        res["ratio_samples_s"] = round(res[best]["samples_s"] / res["hf"]["samples_s"], 3)
        n = min(hf_tokens.shape[1], ours_tokens.shape[1])
        res["tokens_equal_hf"] = round(float((hf_tokens[:, :n] == ours_tokens[:, :n]).float().mean()), 4)
    return res


__all__ = ["run_generate_benchmark", "HF_METHODS"]
