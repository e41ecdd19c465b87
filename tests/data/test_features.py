"""Cached features: equal to running the model's encoder; loaded for training with random views."""

from __future__ import annotations

import json
import os

import pytest
import torch

from scaling.cli.main import main
from scaling.config import load_config
from scaling.config.base import ConfigError
from scaling.data.features import cache_features
from scaling.data.synthetic import write_shards
from scaling.models.builder import build_model
from scaling.models.tiny import save_tiny_encoder, save_tiny_llm, word_tokenizer
from scaling.models.transforms import build_extractor
from scaling.training.loaders import build_loader


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("feat")
    enc = save_tiny_encoder(str(root / "vit"), "vit")
    llm = save_tiny_llm(str(root / "llama"), "llama")
    write_shards(str(root / "shards"), [5, 4], split="train", image_size=40)
    write_shards(str(root / "shards"), [3, 3], split="val", image_size=40, prefix="v")
    overrides = [f"model.encoder={enc}", f"model.llm={llm}", "model.frozen_dtype=fp32", "model.extract.n_levels=2",
                 "model.kernels=torch",
                 f"data.train={root / 'shards'}", f"data.val={root / 'shards'}", "train.micro_batch=3",
                 "eval.batch_size=4", "data.num_workers=0"]
    cfg = load_config(None, overrides)
    out = str(root / "features")
    summary = cache_features(cfg, out, *build_extractor(cfg.model, "cpu", cfg.data), views=2, batch_size=4, progress=False,
                             echo=lambda s: None)
    return root, cfg, overrides, out, summary


def test_cached_features_equal_the_encoder(setup):
    root, cfg, _, out, summary = setup
    assert summary["train"]["num_samples"] == 9 and summary["train"]["views"] == 2
    assert summary["val"]["num_samples"] == 6 and summary["val"]["views"] == 1
    model = build_model(cfg.model)
    tok = word_tokenizer()
    media = build_loader(cfg, tok, "val", 0, 1, False)
    fcfg = load_config(None, [*_overrides(setup), "data.use_features=true", f"data.features={out}"])
    cached = build_loader(fcfg, tok, "val", 0, 1, False)
    by_id = {}
    for b in cached:
        assert b["features"].dtype == torch.float16
        by_id.update(zip(b["ids"], b["features"]))
    assert len(by_id) == 6
    with torch.no_grad():
        for b in media:
            ref = model.extractor(b["pixel_values"])  # [B, L, n_tok, d]
            assert ref.shape[1] == 2  # the two levels the method extracts
            for sid, r in zip(b["ids"], ref):
                assert by_id[sid].shape == r.shape
                torch.testing.assert_close(by_id[sid].float(), r.half().float(), atol=2e-3, rtol=0)


def _overrides(setup):
    return setup[2]


def test_training_from_features_picks_views(setup):
    root, cfg, overrides, out, _ = setup
    tok = word_tokenizer()
    fcfg = load_config(None, [*overrides, "data.use_features=true", f"data.features={out}"])
    loader = build_loader(fcfg, tok, "train", 0, 1, True)
    seen: dict[str, set] = {}
    for _ in range(4):
        for b in loader:
            assert b["features"].shape[0] == 3 and b["features"].dim() == 4
            for sid, f in zip(b["ids"], b["features"]):
                seen.setdefault(sid, set()).add(f.float().sum().item())
    assert any(len(v) == 2 for v in seen.values())  # the two stored views are both used
    assert all(len(v) <= 2 for v in seen.values())
    model = build_model(fcfg.model)
    batch = next(iter(build_loader(fcfg, tok, "train", 0, 1, True)))
    out_ = model(**batch)
    assert torch.isfinite(out_["loss"]) and out_["n_targets"] > 0


def test_features_must_match_the_model_config(setup):
    _, _, overrides, out, _ = setup
    bad = load_config(None, [*overrides, "data.use_features=true", f"data.features={out}", "model.extract.n_levels=1"])
    with pytest.raises(ConfigError, match="n_levels"):
        build_loader(bad, word_tokenizer(), "train", 0, 1, True)
    # extract.norm is part of the signature: the cache was made with auto (= the ViT's final layernorm)
    index = json.load(open(os.path.join(out, "index.json")))
    assert index["splits"]["train"]["features"]["norm"] == "final"
    other = load_config(None, [*overrides, "data.use_features=true", f"data.features={out}", "model.extract.norm=none"])
    with pytest.raises(ConfigError, match="norm: cached 'final', config 'none'.*model.extract.norm=final"):
        build_loader(other, word_tokenizer(), "train", 0, 1, True)
    same = load_config(None, [*overrides, "data.use_features=true", f"data.features={out}", "model.extract.norm=final"])
    assert next(iter(build_loader(same, word_tokenizer(), "train", 0, 1, True)))["features"].dim() == 4
    raw = load_config(None, [*overrides, "data.use_features=true"])  # features flag on media shards
    with pytest.raises(ConfigError, match="no cached features"):
        build_loader(raw, word_tokenizer(), "train", 0, 1, True)


def test_media_batches_run_through_the_model(setup):
    _, cfg, _, _, _ = setup
    model = build_model(cfg.model)
    batch = next(iter(build_loader(cfg, word_tokenizer(), "train", 0, 1, True)))
    out = model(**batch)
    assert torch.isfinite(out["loss"])
    gen = next(iter(build_loader(cfg, word_tokenizer(), "val", 0, 1, False)))
    tokens = model.generate(gen["input_ids"], gen["attention_mask"], max_new_tokens=3, pixel_values=gen["pixel_values"])
    assert tokens.shape[0] == len(gen["ids"])


def test_cli_cache_features_in_parts(setup, tmp_path):
    root, _, overrides, _, _ = setup
    cfg_path = tmp_path / "cfg.yaml"
    cfg_path.write_text("data:\n  num_workers: 0\n")
    out = tmp_path / "parts"
    for part in (0, 1):
        rc = main(["data", "cache-features", "--config", str(cfg_path), "--split", "train", "--out", str(out),
                   "--parts", "2", "--part", str(part), "--no-progress", *overrides])
        assert rc == 0
    index = json.load(open(out / "index.json"))
    assert index["splits"]["train"]["num_samples"] == 9
    assert index["splits"]["train"]["features"]["n_levels"] == 2
    assert not [f for f in os.listdir(out) if f.startswith(".train-part")]
