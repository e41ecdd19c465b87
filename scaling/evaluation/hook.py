"""The trainer's periodic evaluation hook: generate on (a subset of) the validation split and score.

``build_evaluate_fn(cfg)`` returns ``evaluate_fn(model, step) -> metrics`` that the training loop
calls every ``train.eval_every`` steps and at the end (it keeps the best checkpoint by
``eval.metric``). It reads ``eval.subset`` samples of ``data.val`` (all when None), generates in
batches on every rank and gathers. METEOR and SPICE are skipped here (Java starts, minutes for SPICE);
``scaling eval`` computes every metric. Under ZeRO-3 the ranks would run different numbers of
generation steps, which partitioned parameters cannot allow, so the hook returns nothing there.
"""

from __future__ import annotations

import json
import logging

log = logging.getLogger(__name__)


def _zero_stage(cfg) -> int:
    path = cfg.train.deepspeed
    if not path:
        return 0
    try:
        with open(path) as fh:
            return int(json.load(fh).get("zero_optimization", {}).get("stage", 0))
    except (OSError, ValueError, TypeError):
        return 0


def build_evaluate_fn(cfg):
    from scaling.data.sources import has_references
    from scaling.models.shapes import LLM_SHAPES

    if not has_references(cfg.data.val):
        return None  # no split, or a synthetic source without references to generate against (val loss only)
    if cfg.model.llm in LLM_SHAPES:
        log.warning("model.llm=%s is a shape name without a tokenizer: no generation-based evaluation", cfg.model.llm)
        return None
    if _zero_stage(cfg) == 3:
        log.warning("ZeRO-3: periodic generation-based evaluation is disabled (ranks would diverge); "
                    "run `scaling eval` on the checkpoints instead")
        return None
    state: dict = {}

    def evaluate_fn(model, step: int) -> dict:
        import torch

        from scaling.evaluation.evaluate import evaluate
        from scaling.training import distributed
        from scaling.training.loaders import build_loader, generation_tokenizer

        if "tokenizer" not in state:
            state["tokenizer"] = generation_tokenizer(cfg.model.llm, "evaluation", cfg.model.trust_remote_code)
        tok = state["tokenizer"]
        rank, world = distributed.rank(), distributed.world_size()
        loader = build_loader(cfg, tok, "val", rank, world, train=False, limit=cfg.eval.subset)
        device = next(model.parameters()).device
        half = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[cfg.model.frozen_dtype]
        options = {"meteor": False, "spice": False} if cfg.data.task == "caption" else {}
        result = evaluate(model, tok, loader, cfg.data.task, **cfg.eval.generation(), progress=False,
                          media_dtype=half if device.type == "cuda" else None, **options)
        out = {k: v for k, v in result.metrics.items() if v is not None}
        # how many validation samples the score leaves out (no reference, undecodable): train_log.jsonl's eval rows
        # (eval/unscorable_samples), TensorBoard and metrics.json carry it beside the score
        out["unscorable_samples"] = int(result.skipped)
        return out

    return evaluate_fn
