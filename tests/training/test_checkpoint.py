"""Checkpoint files: atomic directories, latest pointer, keep-last-K, RNG states, adapters and fingerprints."""

import os
import random

import numpy as np
import pytest
import torch

from scaling.config import ConfigError, load_config, to_dict
from scaling.models.builder import build_model
from scaling.models.tiny import save_tiny_encoder, save_tiny_llm
from scaling.training import checkpoint as ckpt
from scaling.training.fingerprint import compare, model_fingerprints


@pytest.fixture(scope="module")
def dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("bb")
    return {
        "llama": save_tiny_llm(str(root / "llama"), "llama", seed=0),
        "llama_other": save_tiny_llm(str(root / "llama_other"), "llama", seed=1),
        "opt": save_tiny_llm(str(root / "opt"), "opt", seed=0),
        "vit": save_tiny_encoder(str(root / "vit"), "vit", seed=0),
    }


def _cfg(llm, vit, *extra):
    return load_config(None, [f"model.llm={llm}", f"model.encoder={vit}", "model.method=depalm", "model.frozen_dtype=fp32",
                              "model.map.d_embed=32", "model.map.n_queries=4", *extra])


def _batch():
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(5, 60, (3, 6), generator=g)
    labels = ids.clone()
    labels[:, :3] = -100
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": labels,
            "pixel_values": torch.rand(3, 3, 32, 32, generator=g)}


def _trained_adapter(tmp_path, dirs):
    cfg = _cfg(dirs["llama"], dirs["vit"])
    torch.manual_seed(cfg.train.seed)
    model = build_model(cfg.model)
    with torch.no_grad():  # "training": move every trainable weight away from its initialisation
        for _, p in model.trainable_named_parameters():
            p.add_(torch.randn_like(p) * 0.1)
    path = str(tmp_path / "a.safetensors")
    ckpt.save_adapter(path, model.trainable_state_dict(), to_dict(cfg), model_fingerprints(model), step=7)
    return model, path


def test_adapter_round_trip_gives_identical_outputs(tmp_path, dirs):
    model, path = _trained_adapter(tmp_path, dirs)
    loaded, cfg = ckpt.load_adapter(path, "cpu")
    model.eval()
    batch = _batch()
    with torch.no_grad():
        a, b = model(**batch, return_logits=True), loaded(**batch, return_logits=True)
    assert torch.equal(a["logits"], b["logits"]) and torch.equal(a["loss"], b["loss"])
    tensors, meta = ckpt.read_adapter(path)
    assert meta["step"] == 7 and meta["method"] == "depalm" and set(tensors) == set(model.trainable_state_dict())
    assert all(t.dtype == torch.float32 for t in tensors.values())


def test_other_backbones_are_refused_with_what_differs(tmp_path, dirs):
    _, path = _trained_adapter(tmp_path, dirs)
    with pytest.raises(ConfigError) as err:
        ckpt.load_adapter(path, "cpu", llm=dirs["llama_other"])
    assert "llm weights differ" in str(err.value)
    with pytest.raises(ConfigError) as err:
        ckpt.load_adapter(path, "cpu", llm=dirs["opt"])
    assert "llm architecture" in str(err.value) and "LlamaForCausalLM" in str(err.value) and "OPTForCausalLM" in str(err.value)
    # the same weights in another dtype are recognised by value
    model, cfg = ckpt.load_adapter(path, "cpu", overrides=["model.frozen_dtype=bf16"])
    assert model.llm_dtype == torch.bfloat16


def test_fingerprints_of_a_shape_change():
    cfg_a = load_config(None, ["model.llm=tiny-llama", "model.encoder=tiny-vit", "model.frozen_dtype=fp32"])
    cfg_b = load_config(None, ["model.llm=tiny-qwen2", "model.encoder=tiny-vit", "model.frozen_dtype=fp32"])
    a, b = build_model(cfg_a.model, meta=True), build_model(cfg_b.model, meta=True)
    diffs = compare(model_fingerprints(a), model_fingerprints(b))
    assert diffs and "architecture" in diffs[0]
    assert compare(model_fingerprints(a), model_fingerprints(a)) == []


def test_load_trainable_reports_missing_and_unexpected(dirs):
    model = build_model(_cfg(dirs["llama"], dirs["vit"]).model)
    state = model.trainable_state_dict()
    state.pop(next(iter(state)))
    state["bogus.weight"] = torch.zeros(1)
    with pytest.raises(ConfigError) as err:
        ckpt.load_trainable(model, state)
    assert "lacks 1" in str(err.value) and "bogus.weight" in str(err.value)


def test_atomic_commit_latest_and_keep_last(tmp_path):
    root = str(tmp_path / "checkpoints")
    os.makedirs(root)
    for step in (1, 2, 3, 4):
        tmp = ckpt.begin(root, step)
        ckpt.write_json_atomic(os.path.join(tmp, ckpt.STATE), {"step": step})
        ckpt.commit(root, step, keep_last=2)
    assert [s for s, _ in ckpt.list_checkpoints(root)] == [3, 4]
    assert ckpt.find_latest(str(tmp_path)).endswith("step_000004")
    # a save killed half-way: the tmp directory is ignored and cleaned, latest stays on the last complete one
    tmp = ckpt.begin(root, 5)
    open(os.path.join(tmp, "adapter.safetensors"), "w").close()
    assert ckpt.find_latest(str(tmp_path)).endswith("step_000004")
    ckpt.clean_partial(root)
    assert not os.path.exists(tmp)
    # a dangling latest pointer falls back to the newest complete checkpoint
    ckpt.write_text_atomic(os.path.join(root, ckpt.LATEST), "step_000099\n")
    assert ckpt.find_latest(str(tmp_path)).endswith("step_000004")


def test_rng_states_round_trip_through_weights_only_files(tmp_path):
    random.seed(1), np.random.seed(1), torch.manual_seed(1)
    path = str(tmp_path / "rng.pt")
    ckpt.save_pt(ckpt.rng_state(), path)
    expected = (random.random(), np.random.rand(), torch.rand(1).item())
    random.seed(2), np.random.seed(2), torch.manual_seed(2)
    ckpt.set_rng_state(ckpt.load_pt(path))
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == expected


def test_fingerprints_see_a_change_anywhere_in_the_backbone_and_tolerate_only_dtype_rounding(dirs):
    """Re-noising inner projections (first/middle/last tensors kept) or a 1% drift is another backbone;
    the same weights in bf16 are the same backbone."""
    model = build_model(_cfg(dirs["llama"], dirs["vit"]).model)
    stored = model_fingerprints(model)
    inner = [p for n, p in model.llm.named_parameters() if "layers.0.self_attn.k_proj" in n]
    assert inner
    with torch.no_grad():
        inner[0].add_(torch.randn_like(inner[0]) * 0.02)
    diffs = compare(stored, model_fingerprints(model))
    assert diffs and "k_proj" in diffs[0], diffs

    bf16 = build_model(_cfg(dirs["llama"], dirs["vit"], "model.frozen_dtype=bf16").model)
    assert compare(stored, model_fingerprints(bf16)) == []
    with torch.no_grad():
        for p in bf16.llm.parameters():
            p.mul_(1.01)
    assert compare(stored, model_fingerprints(bf16)), "a 1% drift must not pass as bf16 rounding"

    old_style = {k: dict(v, weights=dict(list(v["weights"].items())[:3])) if v else v for k, v in stored.items()}
    assert compare(old_style, model_fingerprints(build_model(_cfg(dirs["llama"], dirs["vit"]).model))) == []


def test_an_adapter_whose_config_holds_a_removed_key_still_loads(tmp_path, dirs):
    # adapters written before eval.answer_list was removed store it in their config
    model, _ = _trained_adapter(tmp_path, dirs)
    cfg = to_dict(_cfg(dirs["llama"], dirs["vit"]))
    cfg["eval"]["answer_list"] = None
    path = str(tmp_path / "old.safetensors")
    ckpt.save_adapter(path, model.trainable_state_dict(), cfg, model_fingerprints(model), step=7)
    with pytest.warns(UserWarning, match="ignored eval.answer_list"):
        loaded, loaded_cfg = ckpt.load_adapter(path, "cpu")
    assert loaded_cfg.model.method == "depalm"
    with pytest.raises(ConfigError, match="unknown key 'eval.answer_list'"):  # a new config may not set it
        load_config(None, ["eval.answer_list=x"])


def test_a_missing_checkpoint_path_says_it_does_not_exist_and_when_best_is_written(tmp_path):
    with pytest.raises(ConfigError, match="does not exist; RUN/best is written only when"):
        ckpt.resolve_checkpoint(str(tmp_path / "run" / "best"))
    with pytest.raises(ConfigError, match=r"no adapter: .*nowhere' does not exist"):
        ckpt.resolve_adapter_path(str(tmp_path / "nowhere"))
