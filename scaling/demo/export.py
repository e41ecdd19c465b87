"""``scaling demo --export-backbones DIR``: the demo's data and pretrained tiny backbones as plain folders.

The demo keeps them in a hashed cache folder (``~/.cache/scaling/demo/<kind>-<hash>``); this copies them
(building what the cache lacks first, offline) to a folder a user can name in a config:

    DIR/llm/          a 2-layer LLaMA pretrained on the demo's text (save_pretrained + its tokenizer)
    DIR/vit/          a 3-layer ViT pretrained on the demo's images (shapes, colours)
    DIR/ast/          a 3-layer AST pretrained on the demo's tones (without --quick / --no-audio)
    DIR/shards/caption, DIR/shards/vqa[, DIR/shards/audio]   webdataset shards + index.json (train, test)
    DIR/images/       a few test images, for ``scaling predict``

``configs/demo_caption.yaml`` trains DePALM on ``demo/`` (the folder ``--export-backbones demo`` writes
beside the repository's configs): the docs' running example of train → eval → predict → convert → report.
"""

from __future__ import annotations

import json
import os
import shutil

from scaling.demo import cache as cache_mod

N_IMAGES = 4


def export_backbones(dest: str, settings, cache_dir: str, seed: int = 0, fresh: bool = False, progress: bool = True,
                     echo=print) -> dict[str, str]:
    """Build (or reuse) the demo's data and backbones, copy them to ``dest``; returns name → path."""
    from scaling.demo.progress import JobRunner
    from scaling.demo.run import FULL, QUICK, build_data_and_backbones

    os.makedirs(cache_dir, exist_ok=True)
    cache_mod.clean_stale_tmp(cache_dir)
    logs = os.path.join(dest, "logs")
    with JobRunner(workers=settings.workers, progress=progress, echo=echo) as runner:
        # whatever demo ran before (full or --quick) left its artefacts in the cache: export those, build nothing
        others = tuple(o for o in (FULL, QUICK) if o != settings)
        built = build_data_and_backbones(runner, settings, cache_dir, logs, seed, fresh, echo, reuse_from=others)
    out: dict[str, str] = {}
    for name in ("llm", "vit", "ast"):
        if name in built:
            out[name] = _copy(built[name]["path"], os.path.join(dest, name))
    data_root = built["data"]["path"]
    out["shards"] = _copy(os.path.join(data_root, "shards"), os.path.join(dest, "shards"))
    images = os.path.join(dest, "images")
    os.makedirs(images, exist_ok=True)
    with open(os.path.join(data_root, "captions.jsonl")) as fh:
        tests = [r for r in map(json.loads, fh) if r.get("split") == "test"][:N_IMAGES]
    for i, rec in enumerate(tests):
        shutil.copyfile(os.path.join(data_root, rec["image"]), os.path.join(images, f"test{i}.png"))
    out["images"] = images
    return out


def _copy(src: str, dst: str) -> str:
    """Replace ``dst`` with a copy of ``src`` (without the cache's bookkeeping file)."""
    if os.path.isdir(dst):
        shutil.rmtree(dst)
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns(cache_mod.DONE))
    return dst
