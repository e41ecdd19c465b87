"""The ``eval`` config section: generation and periodic evaluation settings.

Defaults are the official DePALM code's (``config/run.yaml`` ``llm.generation``: beam search with 3
beams, at most 50 new tokens, no sampling; the text decoded without special tokens and stripped).
eP-ALM caps the whole sequence instead (``max_length: 30``, prompt included): ``eval.max_length``."""

from __future__ import annotations

import dataclasses
from typing import Any, Literal

from scaling.config.base import ConfigError


@dataclasses.dataclass
class EvalConfig:
    batch_size: int = 32
    max_new_tokens: int = 50
    num_beams: int = 3
    max_length: int | None = None  # cap on prompt + generated tokens (Hugging Face max_length; eP-ALM: 30)
    stop_strings: list[str] = dataclasses.field(default_factory=list)  # cut the text at the first one (e.g. ["\n"])
    subset: int | None = 500  # samples used by periodic evaluation during training (None = all)
    metric: str | None = None  # metric that selects the best checkpoint (default per task: CIDEr / accuracy)
    # generation's KV cache (PerceptualLM.generate): dynamic grows by concatenation; static is preallocated for the
    # whole length (same tokens; on CUDA with model.compile_decode its decode step can be a CUDA graph)
    kv_cache: Literal["dynamic", "static"] = "dynamic"

    def __post_init__(self):
        problems = []
        if self.max_new_tokens < 1:
            problems.append(f"eval.max_new_tokens must be >= 1, got {self.max_new_tokens}")
        if self.num_beams < 1:
            problems.append(f"eval.num_beams must be >= 1 (1 = greedy), got {self.num_beams}")
        if self.max_length is not None and self.max_length < 2:
            problems.append(f"eval.max_length must be >= 2 (a prompt token and a generated one) or null, got {self.max_length}")
        if problems:
            raise ConfigError(problems)

    def generation(self) -> dict[str, Any]:
        """Keyword arguments of :func:`scaling.evaluation.evaluate.evaluate` / ``generate_batch``."""
        return {"max_new_tokens": self.max_new_tokens, "num_beams": self.num_beams, "max_length": self.max_length,
                "stop_strings": tuple(self.stop_strings), "kv_cache": self.kv_cache}
