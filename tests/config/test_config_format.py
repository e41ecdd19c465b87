"""Stored configs carry a format version; older adapters and checkpoints load, evaluate and resume as trained.

The "old" checkpoint is built here from the recorded settings of config format 1 (before the fidelity changes):
a run trained with those settings given explicitly, whose checkpoint is then rewritten as format 1 wrote it
(a stored config without the keys format 1 did not have, no stamp; the optimizer in two groups, decay and no_decay).
"""

import json
import os

import pytest
import torch

from scaling.config import load_config, to_dict
from scaling.config.versions import CONFIG_FORMAT, format_overrides, stored_format, upgrade_format
from scaling.data.toy import tiny_run_overrides
from scaling.training import checkpoint as ckpt
from scaling.training import manifest
from scaling.training.loop import read_log, train
from scaling.training.optim import param_groups

# what format 1 did, as override keys of today's code (docs/fidelity.md, "Stored configs of earlier versions")
FORMAT_1 = ["model.map.norm=rmsnorm", "model.norm_eps=format-1", "model.extract.norm=none", "model.learned_positions=sequence", "train.adam_eps=1e-8",
            "train.decay_1d=false", "train.schedule_unit=optimizer_step", 'eval.stop_strings=["\\n"]', "eval.num_beams=1",
            "eval.max_new_tokens=20", "data.randaugment_style=torchvision", "data.randaugment_m=9"]
# keys a format-1 stored config did not have
NOT_IN_FORMAT_1 = ["config_format", "model.extract.norm", "model.norm_eps", "model.learned_positions", "model.map.norm", "train.adam_eps",
                   "train.schedule_unit", "train.param_groups", "train.loss_on", "train.loss_reduction", "train.loss_weight",
                   "train.signal_budget", "eval.stop_strings", "eval.max_length", "eval.kv_cache", "data.randaugment_style",
                   "data.answer_token", "data.answer_prompt", "data.image_mean", "data.image_std", "data.resample",
                   "data.image_resize", "data.allow_pipe"]


def _as_format_1(config: dict) -> dict:
    out = json.loads(json.dumps(config))
    for key in NOT_IN_FORMAT_1:
        *parents, leaf = key.split(".")
        node = out
        for p in parents:
            node = node.get(p, {})
        node.pop(leaf, None)
    return out


def _rewrite_as_format_1(directory: str, model) -> None:
    """The checkpoint ``directory`` as format 1 wrote it: its adapter's config and its optimizer's groups."""
    path = os.path.join(directory, ckpt.ADAPTER)
    tensors, meta = ckpt.read_adapter(path)
    info = {k: v for k, v in meta.items() if k not in ("format", "config", "fingerprints", "method", "backbones_resolved")}
    ckpt.save_adapter(path, tensors, _as_format_1(meta["config"]), meta["fingerprints"], **info)
    # optimizer: today's per-category groups (train.decay_1d=false) -> decay, then no_decay, in parameter order
    opt_path = os.path.join(directory, "optimizer.pt")
    saved = torch.load(opt_path, weights_only=True)
    named = model.trainable_named_parameters()
    groups = param_groups(named, 0.1, decay_1d=False)
    assert [g["name"] for g in groups] == [g["name"] for g in saved["param_groups"]]
    name_of = {id(p): n for n, p in named}
    index_of, kind = {}, {}
    for live, desc in zip(groups, saved["param_groups"]):
        for p, i in zip(live["params"], desc["params"]):
            index_of[name_of[id(p)]] = i
            kind[name_of[id(p)]] = "no_decay" if live["name"].endswith("/no_decay") else "decay"
    order = [n for n, _ in named]
    state, old_groups, index = {}, [], 0
    for group_name in ("decay", "no_decay"):
        template = next(g for g, live in zip(saved["param_groups"], groups)
                        if live["name"].endswith("/no_decay") == (group_name == "no_decay"))
        group = {**{k: v for k, v in template.items() if k not in ("params", "name")}, "name": group_name, "params": []}
        for n in (n for n in order if kind[n] == group_name):
            if index_of[n] in saved["state"]:
                state[index] = saved["state"][index_of[n]]
            group["params"].append(index)
            index += 1
        old_groups.append(group)
    torch.save({"state": state, "param_groups": old_groups}, opt_path)
    sched_path = os.path.join(directory, "scheduler.pt")
    sched = torch.load(sched_path, weights_only=True)
    sched["base_lrs"], sched["_last_lr"] = sched["base_lrs"][:2], sched["_last_lr"][:2]
    torch.save(sched, sched_path)
    manifest.write(directory)


def test_unstamped_configs_are_told_apart_by_their_keys_and_new_ones_are_stamped(tmp_path):
    cfg = to_dict(load_config(None, tiny_run_overrides(str(tmp_path), 2)))
    assert cfg["config_format"] == CONFIG_FORMAT and stored_format(cfg) == CONFIG_FORMAT
    unstamped = dict(cfg)
    del unstamped["config_format"]
    assert stored_format(unstamped) == 2  # issue 14's defaults: model.learned_positions stored, no stamp
    assert format_overrides(unstamped) == []  # every key it relies on is stored
    # resumed with its own config file, a format-2 run keeps its stored learned_positions ("input" then)
    unstamped["model"]["learned_positions"] = "input"
    assert format_overrides(unstamped, resume=True) == ['model.learned_positions="input"']
    assert 'model.learned_positions="sequence"' in format_overrides(_as_format_1(cfg), resume=True)
    assert 'model.learned_positions="input"' not in format_overrides(_as_format_1(cfg), resume=True)
    assert stored_format(_as_format_1(cfg)) == 1
    vqa = _as_format_1(cfg)
    vqa["data"]["task"] = "vqa"
    assert 'data.prompt_template="{question}</a>"' in format_overrides(vqa)  # None meant "{question}</a>" then
    notes = []
    upgraded = upgrade_format(_as_format_1(cfg), notes.append)
    assert upgraded["config_format"] == CONFIG_FORMAT and len(notes) == 1 and "config format 1" in notes[0]
    assert upgraded["model"]["learned_positions"] == "sequence" and upgraded["model"]["map"]["norm"] == "rmsnorm"


def test_a_format_1_adapter_and_checkpoint_load_evaluate_the_same_and_resume(tmp_path, capsys):
    base = tiny_run_overrides(str(tmp_path / "full"), 6, save_every=3)
    full = train(load_config(None, base + FORMAT_1))  # the reference: format 1's settings, uninterrupted

    class Killed(Exception):
        pass

    def kill_at_5(step, _):
        if step == 5:
            raise Killed

    old_dir = str(tmp_path / "old")
    with pytest.raises(Killed):
        train(load_config(None, tiny_run_overrides(old_dir, 6, save_every=3) + FORMAT_1), on_step=kill_at_5)
    found = ckpt.find_latest(old_dir)
    assert found.endswith("step_000003")
    reference, _ = ckpt.load_adapter(found)  # today's stamped checkpoint, explicit format-1 settings
    _rewrite_as_format_1(found, reference)
    assert stored_format(ckpt.read_adapter_meta(os.path.join(found, ckpt.ADAPTER))["config"]) == 1

    # the adapter loads with format 1's behaviour (said in one line) and evaluates to the same outputs
    with pytest.warns(UserWarning, match="config format 1"):
        loaded, cfg = ckpt.load_adapter(found)
    assert (cfg.model.learned_positions, cfg.model.map["norm"], cfg.model.extract.norm) == ("sequence", "rmsnorm", "none")
    # the mapper's norms have format 1's epsilon (RMSNorm 1e-6, LayerNorm 1e-5; 1e-4 both since)
    assert cfg.model.norm_eps == "format-1" and loaded.mapper.norm.eps == 1e-6
    assert {m.eps for m in loaded.mapper.modules() if isinstance(m, torch.nn.LayerNorm)} == {1e-5}
    g = torch.Generator().manual_seed(0)
    batch = {"input_ids": torch.randint(5, 60, (2, 6), generator=g), "pixel_values": torch.rand(2, 3, 32, 32, generator=g)}
    with torch.no_grad():
        torch.testing.assert_close(loaded(**batch, return_logits=True)["logits"],
                                   reference(**batch, return_logits=True)["logits"], rtol=0, atol=0)

    # the run resumes with its own config file, which never named the keys format 1 took for granted: the
    # optimizer's decay/no_decay groups are migrated and the losses are those of the uninterrupted run
    capsys.readouterr()
    resumed = train(load_config(None, tiny_run_overrides(old_dir, 6, save_every=3)))
    assert resumed.state.step == 6
    notes = [line for line in capsys.readouterr().err.splitlines() if "config format" in line]
    assert len(notes) == 1 and "written with config format 1" in notes[0] and "model.map.norm" in notes[0]
    a = {r["step"]: r for r in read_log(full.output_dir)}
    b = {r["step"]: r for r in read_log(resumed.output_dir)}
    for step in range(4, 7):
        assert a[step]["loss"] == pytest.approx(b[step]["loss"], rel=1e-6, abs=1e-7), step
        assert a[step]["lr"] == pytest.approx(b[step]["lr"], rel=1e-9), step


def test_a_format_1_epalm_adapter_keeps_its_prompt_mlp_width(tmp_path):
    """Format 1 built eP-ALM's prompt MLP d/4 wide (d since): the adapter loads with the width its weights have."""
    from scaling.config.model import model_config
    from scaling.models.builder import build_model
    from scaling.training.fingerprint import model_fingerprints

    overrides = ["model.method=epalm", "model.llm=tiny-llama", "model.encoder=tiny-vit", "model.frozen_dtype=fp32",
                 "model.extract.n_levels=2", "model.inject.n_llm_layers=2", "model.inject.n_left=1"]
    old = [k for k in FORMAT_1 if not k.startswith("model.map.norm")] + ["model.inject.level_map=depalm"]
    cfg = load_config(None, overrides + ["model.finetune.prompt_mlp_hidden=16"] + old)  # tiny LLaMA d = 64: d/4 = 16
    torch.manual_seed(cfg.train.seed)
    model = build_model(cfg.model).eval()
    stored = _as_format_1(to_dict(cfg))
    stored["model"]["finetune"]["prompt_mlp_hidden"] = None  # format 1 left it unset: d/4
    path = str(tmp_path / "epalm.safetensors")
    ckpt.save_adapter(path, model.trainable_state_dict(), stored, model_fingerprints(model))
    with pytest.warns(UserWarning, match="config format 1"):
        loaded, loaded_cfg = ckpt.load_adapter(path)
    assert loaded_cfg.model.finetune.prompt_mlp_hidden == 16
    assert model_config(method="epalm").finetune.prompt_mlp_hidden is None  # today: d
    g = torch.Generator().manual_seed(0)
    batch = {"input_ids": torch.randint(5, 60, (2, 5), generator=g), "pixel_values": torch.rand(2, 3, 32, 32, generator=g)}
    with torch.no_grad():
        torch.testing.assert_close(loaded(**batch, return_logits=True)["logits"], model(**batch, return_logits=True)["logits"],
                                   rtol=0, atol=0)

