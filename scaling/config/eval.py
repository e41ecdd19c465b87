"""The ``eval`` config section: generation and periodic evaluation settings."""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass
class EvalConfig:
    batch_size: int = 32
    max_new_tokens: int = 20
    num_beams: int = 1
    subset: int | None = 500  # samples used by periodic evaluation during training (None = all)
    metric: str | None = None  # metric that selects the best checkpoint (default per task: CIDEr / accuracy)
