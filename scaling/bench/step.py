"""End-to-end training-step benchmark: the project's step vs a plain Hugging Face implementation.

Both run in the same process on the same random-weight backbones (built at real shapes from a
shape name), with the encoder in the step unless ``cached`` is set. The plain path is what a user
would write: encoder → the method's mapper as eager ``nn`` modules → ``torch.cat`` of the prefix and
the text embeddings → ``llm(inputs_embeds=...).logits`` over every position → cross-entropy →
AdamW. It is timed before any kernel patching, so it never benefits from the project's kernels.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from scaling.config.model import model_config
from scaling.models.builder import build_model
from scaling.training.optim import build_optimizer

PEAK_TFLOPS = {"H100": 989.0, "H200": 989.0, "A100": 312.0, "V100": 125.0, "L40": 181.0, "A10": 125.0}


def peak_tflops(device: torch.device) -> float | None:
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    for key, value in PEAK_TFLOPS.items():
        if key in name:
            return value
    return None


@dataclass
class StepResult:
    name: str
    batch: int
    seq_len: int
    step_ms: float
    samples_s: float
    tokens_s: float
    tflops: float
    mfu: float | None
    peak_gb: float | None
    loss: float

    def as_dict(self) -> dict:
        return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in self.__dict__.items()}


class PlainMapper(nn.Module):
    """The plain user's QPMapper: nn.TransformerEncoder, same widths as the project's."""

    def __init__(self, d_in: int, d_out: int, d_embed: int, n_layers: int, n_queries: int):
        super().__init__()
        self.inp = nn.Linear(d_in, d_embed)
        self.q = nn.Parameter(torch.randn(1, n_queries, d_embed) * 0.02)
        layer = nn.TransformerEncoderLayer(d_embed, 8, d_embed, 0.1, activation="gelu", batch_first=True)
        self.tf = nn.TransformerEncoder(layer, n_layers, enable_nested_tensor=False)
        self.out = nn.Linear(d_embed, d_out)
        self.norm = nn.RMSNorm(d_out, eps=1e-6)
        self.nq = n_queries

    def forward(self, x):
        x = self.inp(x)
        x = torch.cat([x, self.q.expand(x.shape[0], -1, -1)], 1)
        h = self.out(self.tf(x)[:, -self.nq :])
        # the norm's input in its weight's dtype (fp32 under autocast), as a user would: bf16 input with an fp32
        # weight falls off torch's fused RMSNorm onto the decomposed path
        return self.norm(h.to(self.norm.weight.dtype))


def random_media(info, batch: int, dev: torch.device, dtype: torch.dtype) -> dict[str, torch.Tensor]:
    """Random encoder input of the right shape for ``info`` (an EncoderInfo; None: no media)."""
    if info is None:
        return {}
    if info.modality == "image":
        return {"pixel_values": torch.randn(batch, 3, info.image_size, info.image_size, device=dev, dtype=dtype)}
    if info.modality == "video":
        return {"video": torch.randn(batch, info.num_frames, 3, info.image_size, info.image_size, device=dev, dtype=dtype)}
    return {"audio": torch.randn(batch, info.max_length, info.num_mel_bins, device=dev, dtype=dtype)}


TORCHAO_NOTE = (
    "torchao row-wise float8 on the Hugging Face layers with torch.compile per decoder layer (torchao's recommendation); "
    "still unequal: our FP8 runs the fused layers without torch.compile (inductor also fuses the norms, rotary and SwiGLU "
    "of torchao's row), torchao's Float8Linear saves its bf16 input and computes the frozen weights' gradient in its "
    "backward (torch.compile drops it only where the unused output is dead code), and its weights are cast to float8 "
    "every step while ours are quantised once")


def _liger_missing() -> str | None:
    """Why Liger-Kernel cannot be timed here (None: it can)."""
    try:
        import liger_kernel.transformers  # noqa: F401
    except ImportError:
        return "liger-kernel not installed (pip install liger-kernel; on the GPU machine: its wheel in .whl/, docs/gpu_bench.md)"
    return None


def _torchao_missing(dev: torch.device) -> str | None:
    """Why torchao's row-wise float8 cannot be timed here (None: it can)."""
    try:
        import torchao.float8  # noqa: F401
    except ImportError:
        return "torchao not installed (pip install torchao; on the GPU machine: its wheel in .whl/, docs/gpu_bench.md)"
    if dev.type != "cuda" or torch.cuda.get_device_capability(dev) < (8, 9):
        return "torchao float8 needs a CUDA GPU of compute capability >= 8.9 (H100/H200/L40)"
    return None


def _profile(step, dev: torch.device, path: str) -> None:
    """A torch.profiler table of 3 calls of ``step`` (sorted by device time on CUDA) written to ``path``."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if dev.type == "cuda" else [])
    with torch_profile(activities=acts) as prof:
        for _ in range(3):
            step()
        _sync(dev)
    key = "cuda_time_total" if dev.type == "cuda" else "cpu_time_total"
    with open(path, "w") as fh:
        fh.write(prof.key_averages().table(sort_by=key, row_limit=40))


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _time(step, device, warmup: int, steps: int) -> tuple[float, float, float | None]:
    loss = 0.0
    for _ in range(warmup):
        loss = step()
    _sync(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    t = time.perf_counter()
    for _ in range(steps):
        loss = step()
    _sync(device)
    dt = (time.perf_counter() - t) / steps
    peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None
    return dt, float(loss), peak


def run_benchmark(
    llm_shape: str = "llama-7b",
    encoder_shape: str = "clip-vit-l14",
    method: str = "depalm",
    batch: int = 32,
    text_len: int = 24,
    device: str = "cuda",
    dtype: str = "bf16",
    compare_plain: bool = True,
    cached: bool = False,
    warmup: int = 3,
    steps: int = 10,
    kernels: str = "auto",
    fused_llm: bool = True,
    overrides: dict | None = None,
    compile_encoder: bool = False,
    profile: str | None = None,
    fp8: bool = False,
    liger: bool = False,
    torchao_fp8: bool = False,
    profile_plain: str | None = None,
) -> dict:
    """Time warm training steps; returns {"ours": ..., "plain": ..., "ratio": ...} (dicts).

    ``fp8``: afterwards quantise the fused LLM's weights to FP8 (``model.fp8_llm``) and time that step
    too (``ours_fp8``); ``fp8_effect`` compares loss and trainable gradients of one batch, same
    parameters and dropout masks, before and after quantising.

    ``liger``: the plain step with the LLM patched by Liger-Kernel (RMSNorm, SwiGLU, rotary, fused linear
    cross-entropy through the model's own loss) as row ``plain_liger``; the project's step is not timed
    in that process (Liger's patches would leak into it). ``torchao_fp8``: after the project's step,
    convert the LLM's linear layers to torchao's row-wise float8 training and time it (``ours_torchao_fp8``;
    use it with ``fused_llm=False``: the fused layers bypass the ``nn.Linear`` modules). A missing
    package is reported in the result (``skipped``), not raised."""
    if fp8 and not fused_llm:
        raise ValueError("--fp8 quantises the fused LLM layers: drop --no-fused-llm")
    dev = torch.device(device)
    if fp8:
        from scaling.models.fp8 import check_fp8_device

        check_fp8_device(dev, {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[dtype])
    if dev.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
    # fused_llm=off: the plain reference must run the unmodified HF layers; the fused forward is installed
    # below, after the plain measurement
    cfg = model_config(method=method, llm=llm_shape, encoder=encoder_shape, frozen_dtype=dtype, kernels=kernels,
                       **{"fused_llm": "off", **(overrides or {})})
    torch.manual_seed(0)
    model = build_model(cfg, device=dev)
    model.train()
    info = model.extractor.encoder.info if model.extractor is not None else None
    vocab = model.layout.embed_tokens.weight.shape[0]
    ids = torch.randint(0, vocab, (batch, text_len), device=dev)
    half = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[dtype]
    media = random_media(info, batch, dev, half)
    feats = None
    if cached and model.extractor is not None:
        with torch.no_grad():
            feats = model.extractor(next(iter(media.values()))).to(half)
        media = {}
    n_llm = sum(p.numel() for p in model.layout.layers.parameters())
    n_enc = sum(p.numel() for p in model.extractor.encoder.parameters()) if model.extractor is not None else 0
    enc_tokens = (info.n_patches + info.n_special) * (info.num_frames if info and info.per_frame else 1) if info else 0
    autocast = torch.autocast(dev.type, dtype=half) if dtype != "fp32" else contextlib.nullcontext()
    peak = peak_tflops(dev)
    results = {}

    def measure(name, step, seq_len):
        dt, loss, mem = _time(step, dev, warmup, steps)
        flops = 4 * n_llm * batch * seq_len + (0 if cached else 2 * n_enc * batch * enc_tokens)
        tf = flops / dt / 1e12
        results[name] = StepResult(name, batch, seq_len, dt * 1e3, batch / dt, batch * seq_len / dt, tf,
                                   (tf / peak) if peak else None, mem, loss).as_dict()

    labels = ids.clone()
    trainable = [p for _, p in model.trainable_named_parameters()]
    skipped = {}
    if liger:
        why = _liger_missing()
        if why:
            skipped["plain_liger"] = why
            compare_plain = False
        else:
            compare_plain = True
            from liger_kernel.transformers import _apply_liger_kernel_to_instance

            _apply_liger_kernel_to_instance(model=model.llm)

    # ---------------------------------------------------------------- plain reference (first: no patches yet)
    if compare_plain:
        if method not in ("depalm", "limber-all", "limber-1"):
            raise ValueError("--compare plain implements depalm, limber-all and limber-1")
        d_llm = model.layout.hidden_size
        if method == "depalm":
            m = cfg.map
            plain_mapper = PlainMapper(info.hidden_size, d_llm, m["d_embed"], m["n_layers"], m["n_queries"]).to(dev)
        else:
            plain_mapper = nn.Linear(info.hidden_size, d_llm).to(dev)
        n_prompt = cfg.finetune.n_prompt
        prompt = nn.Parameter(torch.zeros(1, max(n_prompt, 0), d_llm, device=dev))
        params = list(plain_mapper.parameters()) + [prompt]
        opt_p = torch.optim.AdamW(params, lr=1e-4, weight_decay=0.1)
        llm, enc = model.llm, model.extractor.encoder.model
        cls_only = cfg.extract.tokens == "cls"

        def plain_step():
            if feats is not None:
                x = feats[:, -1]
            else:
                with torch.no_grad():
                    x = enc(**{"pixel_values": media["pixel_values"]}).last_hidden_state
            if cls_only:
                x = x[:, :1]
            with autocast:
                vis = plain_mapper(x)
                emb = llm.get_input_embeddings()(ids)
                seq = torch.cat([vis.to(emb.dtype), prompt.to(emb.dtype).expand(batch, -1, -1), emb], 1)
                npre = vis.shape[1] + prompt.shape[1]
                if liger:  # Liger's fused linear cross-entropy runs inside the model's own loss; the frozen LLM
                    # is in eval mode, where Liger computes full logits unless told to skip them
                    full = torch.cat([labels.new_full((batch, npre), -100), labels], 1)
                    loss = llm(inputs_embeds=seq, labels=full, skip_logits=True).loss
                else:
                    logits = llm(inputs_embeds=seq).logits[:, npre - 1 : -1].float()
                    loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1), label_smoothing=2e-3)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 0.8)
            opt_p.step()
            opt_p.zero_grad(set_to_none=True)
            return loss.detach()

        n_prefix = (m["n_queries"] if method == "depalm" else (1 if cls_only else info.n_patches + 1)) + n_prompt
        measure("plain_liger" if liger else "plain", plain_step, n_prefix + text_len)
        if profile_plain:  # where the time goes before the project's changes
            _profile(plain_step, dev, profile_plain)
        del opt_p, plain_mapper, prompt, params
        if dev.type == "cuda":
            torch.cuda.empty_cache()

    if liger:  # the project's step is timed in its own process (no Liger patches in it)
        out = {"config": {"llm": llm_shape, "encoder": encoder_shape, "method": method, "batch": batch,
                          "text_len": text_len, "device": str(dev), "dtype": dtype, "cached_features": cached,
                          "gpu": torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu"}}
        out.update(results)
        if skipped:
            out["skipped"] = skipped
        return out

    # ---------------------------------------------------------------- the project's step
    report = None
    if fused_llm and (dev.type == "cuda" or fp8):
        try:
            from scaling.models.fast_llm import accelerate_llm

            report = accelerate_llm(model.llm, mode=kernels)
        except ImportError:
            report = None
    if compile_encoder and model.extractor is not None:
        model.compile_encoder()
    # the trainer's optimizer, as the trainer builds it on this device (single process)
    opt = build_optimizer(model.trainable_named_parameters(), 1e-4, 0.1, fused=dev.type == "cuda")

    def our_step():
        with autocast:
            out = model(input_ids=ids, labels=labels, features=feats, **media)
        out["loss"].backward()
        torch.nn.utils.clip_grad_norm_(trainable, 0.8)
        opt.step()
        opt.zero_grad(set_to_none=True)
        return out["loss"].detach()

    with torch.no_grad():
        mapped = model.encode(features=feats, **media)
    n_prefix = (mapped.shape[1] * mapped.shape[2] if mapped is not None else 0) + cfg.finetune.n_prompt
    measure("ours", our_step, n_prefix + text_len)
    if fp8:
        from scaling.models.fast_llm import accelerate_llm

        def probe():
            opt.zero_grad(set_to_none=True)
            torch.manual_seed(1234)  # the same dropout masks before and after quantising
            with autocast:
                loss = model(input_ids=ids, labels=labels, features=feats, **media)["loss"]
            loss.backward()
            grad = torch.cat([p.grad.flatten().double() for p in trainable if p.grad is not None])
            opt.zero_grad(set_to_none=True)
            return loss.item(), grad

        loss_dense, grad_dense = probe()
        report = accelerate_llm(model.llm, mode=kernels, fp8=True)
        loss_fp8, grad_fp8 = probe()
        measure("ours_fp8", our_step, n_prefix + text_len)
        results["fp8_effect"] = {
            "loss": loss_dense, "loss_fp8": loss_fp8, "loss_rel_diff": abs(loss_fp8 - loss_dense) / abs(loss_dense),
            "grad_cosine": F.cosine_similarity(grad_dense, grad_fp8, dim=0).item(),
            "grad_rel_diff": ((grad_fp8 - grad_dense).norm() / grad_dense.norm()).item(),
        }
    if torchao_fp8:
        why = _torchao_missing(dev)
        if why:
            skipped["ours_torchao_fp8"] = why
        else:
            from torchao.float8 import Float8LinearConfig, convert_to_float8_training

            convert_to_float8_training(model.layout.base, config=Float8LinearConfig.from_recipe_name("rowwise"),
                                       module_filter_fn=lambda mod, fqn: mod.in_features % 16 == 0 and mod.out_features % 16 == 0)
            for layer in model.layout.layers:  # torchao's float8 training is meant to run under torch.compile
                layer.compile()  # (per decoder layer, as torchtitan does; compiled during the warm-up steps)
            measure("ours_torchao_fp8", our_step, n_prefix + text_len)
            results["notes"] = {"ours_torchao_fp8": TORCHAO_NOTE}
    if profile:
        _profile(our_step, dev, profile)
    out = {"config": {"llm": llm_shape, "encoder": encoder_shape, "method": method, "batch": batch, "text_len": text_len,
                      "device": str(dev), "dtype": dtype, "cached_features": cached, "kernels": kernels,
                      "fused_llm": report, "gpu": torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu"}}
    out.update(results)
    if skipped:
        out["skipped"] = skipped
    if "plain" in results:
        out["ratio_samples_s"] = results["ours"]["samples_s"] / results["plain"]["samples_s"]
        if results["plain"]["peak_gb"] is not None:
            out["peak_memory_ratio"] = results["ours"]["peak_gb"] / results["plain"]["peak_gb"]
        if "ours_fp8" in results:
            out["ratio_fp8_samples_s"] = results["ours_fp8"]["samples_s"] / results["plain"]["samples_s"]
            if results["plain"]["peak_gb"] is not None:
                out["peak_memory_ratio_fp8"] = results["ours_fp8"]["peak_gb"] / results["plain"]["peak_gb"]
    return out
