"""A tiny trained adapter (DePALM, tiny LLaMA + ViT, 4 steps on coloured-square captions) and its test images,
built once per test session (the browser fixtures are in tests/conftest.py)."""

from __future__ import annotations

import json

import pytest
from PIL import Image

COLOURS = {"red": (220, 30, 30), "green": (30, 200, 30), "blue": (30, 30, 220)}


def write_shards(root, n: int = 24, n_train: int = 18) -> str:
    """Coloured-square images with captions and a question each, as shards (``scaling data convert jsonl``)."""
    from scaling.cli.main import main

    media = root / "media"
    media.mkdir(parents=True, exist_ok=True)
    lines = []
    for i in range(n):
        name = list(COLOURS)[i % 3]
        img = Image.new("RGB", (32, 32), COLOURS[name])
        img.paste((255, 255, 255), (4 + i % 5, 4, 12 + i % 5, 12))  # no two images alike
        img.save(media / f"img{i}.png")
        split = "train" if i < n_train else "test"
        lines.append({"id": f"s{i}", "image": f"img{i}.png", "captions": [f"a {name} picture", f"{name} image"],
                      "split": split})
    ann = root / "data.jsonl"
    ann.write_text("\n".join(json.dumps(line) for line in lines))
    assert main(["data", "convert", "jsonl", "--annotations", str(ann), "--media", str(media),
                 "--out", str(root / "shards" / "{split}-%06d.tar")]) == 0
    return str(root / "shards")


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> dict[str, str]:
    """{'run': a trained run folder, 'media': its images, 'shards': its shards}."""
    from scaling.cli.main import main
    from scaling.models.tiny import save_tiny_encoder, save_tiny_llm

    root = tmp_path_factory.mktemp("serve_run")
    llm = save_tiny_llm(str(root / "llama"), "llama")
    vit = save_tiny_encoder(str(root / "vit"), "vit")
    shards = write_shards(root)
    run = root / "run"
    assert main(["train", "model.method=depalm", f"model.llm={llm}", f"model.encoder={vit}", "model.frozen_dtype=fp32",
                 "model.map.d_embed=32", "model.map.n_queries=4", f"data.train={shards}", f"data.test={shards}",
                 "data.task=caption", "data.num_workers=0", f"train.output_dir={run}", "train.max_steps=4",
                 "train.global_batch=6", "train.micro_batch=6", "train.precision=fp32", "train.save_every=4",
                 "train.log_every=1", "train.progress_bar=false", "eval.max_new_tokens=6"]) == 0
    return {"run": str(run), "media": str(root / "media"), "shards": shards}
