"""``scaling data bench``: decoded samples per second per modality (a benchmark, not a test).

Measures, on the first ``n`` samples of a shard set: reading raw samples from the shards, then
decoding + preprocessing them with the training (augmented) and evaluation pipelines, in one process
(multiply by ``data.num_workers`` for a rough loader throughput). Cached-feature shards are measured
the same way (loading the float16 arrays and picking a view).
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import Any

from scaling.common.media import MediaSpec
from scaling.data.decode import SampleDecoder, SampleError
from scaling.data.shards import media_kind, read_positions


def _modality_of(raw: dict) -> str | None:
    kinds = {media_kind(k) for k in raw if not k.startswith("__")}
    for kind in ("features", "video", "frames", "audio", "image"):
        if kind in kinds:
            return "video" if kind == "frames" else kind
    return None


#: Below this many samples the rates measure start-up more than decoding.
FEW_SAMPLES = 50


def bench(source: str, split: str = "train", n: int = 200, modality: str | None = None, cfg=None,
          echo=print, spec: MediaSpec | Callable[[], MediaSpec] | None = None) -> dict[str, Any]:
    """Benchmark decoding of ``source`` (a folder/index/URL pattern); returns {stage: samples/s}. ``spec``: the
    model's preprocessing (``scaling.models.transforms.media_spec``; a callable is called only when media are
    decoded, not for cached features); without one, a 224 px / AST-base default."""
    from scaling.common.media import default_spec
    from scaling.data.shards import resolve_split

    src = resolve_split(source, split, cfg.data.index if cfg is not None else None, what="bench",
                        allow_pipe=True)  # the source is the caller's own argument
    t0 = time.perf_counter()
    raws = []
    for shard in src.shards:
        for _, raw, _ in read_positions(shard.url, list(range(shard.num_samples))):
            if raw is not None:
                raws.append(raw)
            if len(raws) >= n:
                break
        if len(raws) >= n:
            break
    t_read = time.perf_counter() - t0
    if not raws:
        echo("no readable sample")
        return {}
    kind = modality or _modality_of(raws[0]) or src.meta.get("modality") or "image"
    results = {"read": len(raws) / max(t_read, 1e-9)}
    echo(f"{len(raws)} samples of {kind} from {len(src.shards)} shard(s)")
    if len(raws) < FEW_SAMPLES:
        echo(f"  note: only {len(raws)} samples (fewer than {FEW_SAMPLES}): the figures below are dominated by start-up "
             f"(opening shards, first decoder calls), not the steady rate; bench a split with more samples (-n)")
    echo(f"  read raw samples       {results['read']:10.1f} samples/s")
    use_features = kind == "features"
    if use_features:
        spec = None
    elif spec is None:
        spec = default_spec(kind)
    elif callable(spec):
        spec = spec()
    data_cfg = cfg.data if cfg is not None else None
    for train in (True, False):
        dec = SampleDecoder(spec, train, src.meta.get("task", "caption"), data_cfg, use_features=use_features)
        ok = 0
        t0 = time.perf_counter()
        for i, raw in enumerate(raws):
            try:
                dec(raw, random.Random(i))
                ok += 1
            except SampleError:
                pass
        dt = time.perf_counter() - t0
        name = f"decode {'train' if train else 'eval'}"
        results[name] = ok / max(dt, 1e-9)
        shape = ""
        if spec is not None:
            shape = f"({spec.modality} {spec.image_size if spec.modality != 'audio' else spec.max_length})"
        echo(f"  {name:<22} {results[name]:10.1f} samples/s per process {shape} ({len(raws) - ok} failed)")
    return results
