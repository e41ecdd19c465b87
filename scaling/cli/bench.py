"""`scaling bench`: time the project's training step against a plain implementation (same process)."""

from __future__ import annotations

import json


def register(sub) -> None:
    from scaling.config.base import literal_choices
    from scaling.config.model import ModelConfig

    p = sub.add_parser("bench", help="training-step throughput: the project's step vs a plain HF implementation")
    p.add_argument("--llm-shape", default="llama-7b")
    p.add_argument("--encoder-shape", default="clip-vit-l14")
    p.add_argument("--method", default="depalm")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--text-len", type=int, default=24)
    p.add_argument("--device", default="cuda", help="cuda or cpu (use tiny shapes on cpu)")
    p.add_argument("--dtype", default="bf16", choices=literal_choices(ModelConfig, "frozen_dtype"))
    p.add_argument("--compare", choices=["plain", "liger", "hf", "none"], default=None,
                   help="plain (training step, the default) | liger (the plain step patched with Liger-Kernel, timed alone) | "
                        "hf (with --generate: Hugging Face generate, the default) | none")
    p.add_argument("--torchao-fp8", action="store_true",
                   help="also time the project's step with the LLM's linears in torchao's row-wise float8 "
                        "(use with --no-fused-llm; needs torchao and a GPU of compute capability >= 8.9)")
    p.add_argument("--generate", action="store_true",
                   help="time evaluation generation (greedy, left-padded batch) instead of the training step: "
                        "samples/s and ms per decode step, ours (dynamic and static KV cache) vs Hugging Face generate")
    p.add_argument("--new-tokens", type=int, default=20, help="--generate: tokens generated per sample")
    p.add_argument("--compile-decode", action="store_true",
                   help="--generate on CUDA: time only the static-cache decode captured as a CUDA graph "
                        "(torch.compile mode=reduce-overhead), as its own run (reported as skipped on CPU)")
    p.add_argument("--cached-features", action="store_true", help="read cached encoder features instead of running the encoder")
    p.add_argument("--kernels", default="auto", choices=literal_choices(ModelConfig, "kernels"))
    p.add_argument("--no-fused-llm", action="store_true", help="do not swap fused kernels into the frozen LLM")
    p.add_argument("--compile-encoder", action="store_true", help="torch.compile the frozen encoder's forward")
    p.add_argument("--fp8", action="store_true",
                   help="also time the step with the frozen LLM's weights in FP8 (model.fp8_llm) and report its effect on the loss")
    p.add_argument("--profile", metavar="FILE", help="write a torch.profiler table of 3 of the project's steps")
    p.add_argument("--profile-plain", metavar="FILE", help="write a torch.profiler table of 3 plain steps (with --compare plain)")
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=run)


def run(args) -> int:
    import transformers

    from scaling.bench.step import run_benchmark

    transformers.utils.logging.set_verbosity_error()
    if args.generate:
        return run_generate(args)
    if args.compare == "hf":
        raise SystemExit("--compare hf compares generation: add --generate (the training step compares with --compare plain)")
    args.compare = args.compare or "plain"
    res = run_benchmark(
        args.llm_shape, args.encoder_shape, args.method, args.batch, args.text_len, args.device, args.dtype,
        compare_plain=args.compare == "plain", cached=args.cached_features, warmup=args.warmup, steps=args.steps,
        kernels=args.kernels, fused_llm=not args.no_fused_llm,
        compile_encoder=args.compile_encoder, profile=args.profile, fp8=args.fp8,
        liger=args.compare == "liger", torchao_fp8=args.torchao_fp8, profile_plain=args.profile_plain,
    )
    if args.json:
        print(json.dumps(res))
        return 0
    cfg = res["config"]
    print(f"{cfg['method']} | {cfg['llm']} + {cfg['encoder']} | batch {cfg['batch']} × {cfg['text_len']} text tokens | "
          f"{cfg['gpu']} {cfg['dtype']}{' | cached features' if cfg['cached_features'] else ''}")
    cols = ["step_ms", "samples_s", "tokens_s", "tflops", "mfu", "peak_gb", "loss"]
    print(f"{'':8s}" + "".join(f"{c:>12s}" for c in cols))
    for name in ("plain", "plain_liger", "ours", "ours_fp8", "ours_torchao_fp8"):
        if name in res:
            r = res[name]
            print(f"{name:8s}" + "".join(f"{(r[c] if r[c] is not None else float('nan')):>12.3f}" for c in cols))
    for name, why in res.get("skipped", {}).items():
        print(f"{name:8s} skipped: {why}")
    if "ratio_samples_s" in res:
        print(f"speed-up (samples/s): {res['ratio_samples_s']:.2f}x   peak memory ratio: {res.get('peak_memory_ratio', float('nan')):.2f}")
    if "ratio_fp8_samples_s" in res:
        print(f"speed-up with FP8 (samples/s): {res['ratio_fp8_samples_s']:.2f}x   "
              f"peak memory ratio: {res.get('peak_memory_ratio_fp8', float('nan')):.2f}")
    if "fp8_effect" in res:
        e = res["fp8_effect"]
        print(f"FP8 effect on one batch: loss {e['loss']:.5f} → {e['loss_fp8']:.5f} (relative {e['loss_rel_diff']:.2e}), "
              f"trainable-gradient cosine {e['grad_cosine']:.5f}, relative difference {e['grad_rel_diff']:.3f}")
    return 0


def run_generate(args) -> int:
    from scaling.bench.generate import run_generate_benchmark

    if args.compare == "plain":
        raise SystemExit("--generate compares with Hugging Face generate: use --compare hf (or none)")
    res = run_generate_benchmark(
        args.llm_shape, args.encoder_shape, args.method, args.batch, args.text_len, args.new_tokens, args.device,
        args.dtype, compare_hf=(args.compare or "hf") == "hf", warmup=args.warmup, repeats=args.steps,
        compile_decode=args.compile_decode,
    )
    if args.json:
        print(json.dumps(res))
        return 0
    cfg = res["config"]
    print(f"generate {cfg['method']} | {cfg['llm']} + {cfg['encoder']} | batch {cfg['batch']}, {cfg['prompt_len']}-token "
          f"prompts (left-padded), {cfg['new_tokens']} new tokens | {cfg['gpu']} {cfg['dtype']}")
    cols = ["total_ms", "samples_s", "prefill_ms", "decode_ms_per_step"]
    print(f"{'':18s}" + "".join(f"{c:>20s}" for c in cols))
    for name in ("hf", "ours_dynamic", "ours_static", "ours_static_graph"):
        if name in res:
            print(f"{name:18s}" + "".join(f"{res[name][c]:>20.3f}" for c in cols))
    for name, why in res.get("skipped", {}).items():
        print(f"{name:18s} skipped: {why}")
    if "ratio_samples_s" in res:
        print(f"speed-up vs HF generate (samples/s, {res['best']}): {res['ratio_samples_s']:.2f}x "
              f"(target >= {res['target_ratio']:g}x: {'met' if res['target_met'] else 'NOT met'}); "
              f"greedy tokens equal to HF's: {res['tokens_equal_hf']:.1%}")
    return 0
