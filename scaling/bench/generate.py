"""Evaluation-generation benchmark: the project's ``generate`` vs Hugging Face ``generate``, one process.

Both run greedy decoding of ``new_tokens`` tokens for a left-padded batch of prompts on the same
random-weight backbones (built at real shapes from a shape name), with the encoder and the mapper in
the timed call. The Hugging Face side is what a user would write: encode → the method's prefix →
``torch.cat`` with the text embeddings → ``llm.generate(inputs_embeds=..., attention_mask=...)``
(its default dynamic cache). It needs a method whose perception enters at the first layer (DePALM,
LiMBeR, MAPL, blind); inner injection and cross-attention have no Hugging Face counterpart.

Reported per variant: ``total_ms`` of one ``generate`` call (wall clock), ``samples_s``, and, timed
directly inside that call at each ``lm_head`` call (CUDA events on a GPU, ``perf_counter`` on CPU),
``prefill_ms`` (call start → the first token's logits: encoder + prefix + prompt pass) and
``decode_ms_per_step`` (first → last token's logits, divided by the ``new_tokens - 1`` decode steps).

``compile_decode``: the static-cache decode captured as a CUDA graph, timed alone (``ours_static_graph``),
so that a failure there loses only its own run; its tokens are compared with an untimed dynamic-cache call.
On CPU it is reported as skipped (CUDA graphs need a GPU).

``ratio_samples_s`` (the best of ours / HF) and ``target_met`` (>= ``TARGET_RATIO``, issue 18's 3x) are
figures of the run, never asserted by a test.
"""

from __future__ import annotations

import time

import torch

from scaling.bench.step import _sync, random_media
from scaling.config.model import model_config
from scaling.models.builder import build_model

HF_METHODS = ("depalm", "limber-1", "limber-all", "mapl", "blind")
DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}


class _StepClock:
    """Marks the end of every ``lm_head`` call (one per generated token, prefill included) during ``with``:
    CUDA events on a GPU (no synchronisation inside the loop), ``perf_counter`` on CPU."""

    def __init__(self, head: torch.nn.Module, device: torch.device):
        self.head, self.cuda = head, device.type == "cuda"
        self.marks: list = []

    def _mark(self):
        if self.cuda:
            ev = torch.cuda.Event(enable_timing=True)
            ev.record()
            return ev
        return time.perf_counter()

    def __enter__(self):
        self.marks = [self._mark()]
        self._hook = self.head.register_forward_hook(lambda *_: self.marks.append(self._mark()))
        return self

    def __exit__(self, *exc):
        self._hook.remove()

    def ms(self, a, b) -> float:
        return a.elapsed_time(b) if self.cuda else (b - a) * 1e3

    def split(self) -> tuple[float, float]:
        """(prefill ms, ms per decode step) of the call just timed (after a synchronisation)."""
        start, first, last = self.marks[0], self.marks[1], self.marks[-1]
        steps = len(self.marks) - 2
        return self.ms(start, first), (self.ms(first, last) / steps if steps else float("nan"))


def _timed_rows(fn, head, device, warmup: int, repeats: int, batch: int) -> tuple[dict, torch.Tensor]:
    """Warm-up calls, then ``repeats`` timed calls of ``fn``; the row's figures are means over them."""
    out = None
    for _ in range(warmup):
        out = fn()
    _sync(device)
    totals, prefills, decodes = [], [], []
    for _ in range(repeats):
        clock = _StepClock(head, device)
        t = time.perf_counter()
        with clock:
            out = fn()
        _sync(device)
        totals.append(time.perf_counter() - t)
        prefill, decode = clock.split()
        prefills.append(prefill)
        decodes.append(decode)
    total = sum(totals) / len(totals)
    return {"total_ms": round(total * 1e3, 3), "samples_s": round(batch / total, 3),
            "prefill_ms": round(sum(prefills) / len(prefills), 3),
            "decode_ms_per_step": round(sum(decodes) / len(decodes), 4), "decode_steps": len(clock.marks) - 2}, out


TARGET_RATIO = 3.0  # issue 18: generation >= 3x Hugging Face generate (batch 64, 20 new tokens, LLaMA-7B shapes)


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
    """Time ``generate`` calls; returns {"config", "hf", "ours_dynamic", "ours_static", "ratio_samples_s",
    "target_met", "tokens_equal_hf", ...}; with ``compile_decode``: {"config", "ours_static_graph",
    "graph_equals_dynamic"[, "hf", ...]} (or "skipped" on CPU)."""
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

    def ours(kind):
        return lambda: model.generate(ids, mask, max_new_tokens=new_tokens, kv_cache=kind, **media)

    head = model.layout.lm_head  # our generate and HF's both call it once per generated token

    def row(fn):
        return _timed_rows(fn, head, dev, warmup, max(repeats, 1), batch)

    res: dict = {"config": {"method": method, "llm": llm_shape, "encoder": encoder_shape, "batch": batch,
                            "prompt_len": prompt_len, "new_tokens": new_tokens, "dtype": dtype, "device": str(dev),
                            "gpu": torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu",
                            "decode_timing": "CUDA events at each lm_head call" if dev.type == "cuda"
                            else "perf_counter at each lm_head call"}}
    with torch.no_grad():
        if compare_hf:
            def hf():
                mapped = model.encode(**media)
                prefix, _ = model.prefix(mapped, batch)
                embeds, full_mask, _ = model._inputs(ids, mask, prefix)
                return model.llm.generate(inputs_embeds=embeds, attention_mask=full_mask, max_new_tokens=new_tokens,
                                          min_new_tokens=new_tokens, do_sample=False, num_beams=1, pad_token_id=0)
            res["hf"], hf_tokens = row(hf)
            res["config"]["prefix_tokens"] = int(model.prefix(model.encode(**media), batch)[0].shape[1])
        if compile_decode:  # its own run: the graph capture's failure loses only this row
            reference = ours("dynamic")()
            if dev.type != "cuda":
                res["skipped"] = {"ours_static_graph": "CUDA graphs need --device cuda (never used on CPU)"}
            else:
                model.compile_decode = True
                try:
                    res["ours_static_graph"], graph_tokens = row(ours("static"))
                finally:
                    model.compile_decode = False
                res["graph_equals_dynamic"] = bool(torch.equal(graph_tokens, reference))
            ours_tokens = reference
        else:
            res["ours_dynamic"], ours_tokens = row(ours("dynamic"))
            res["ours_static"], static_tokens = row(ours("static"))
            res["static_equals_dynamic"] = bool(torch.equal(static_tokens, ours_tokens))
    rows = [k for k in res if k.startswith("ours_") and isinstance(res[k], dict)]
    if compare_hf and rows:
        best = max(rows, key=lambda k: res[k]["samples_s"])
        res["best"] = best
        res["ratio_samples_s"] = round(res[best]["samples_s"] / res["hf"]["samples_s"], 3)
        res["target_ratio"] = TARGET_RATIO
        res["target_met"] = res["ratio_samples_s"] >= TARGET_RATIO
        n = min(hf_tokens.shape[1], ours_tokens.shape[1])
        res["tokens_equal_hf"] = round(float((hf_tokens[:, :n] == ours_tokens[:, :n]).float().mean()), 4)
    return res


__all__ = ["run_generate_benchmark", "HF_METHODS", "TARGET_RATIO"]
