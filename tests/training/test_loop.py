"""The single-process loop on the learnable colour task: learning, exact resume, skipped steps, hooks."""

import json
import os

import pytest
import torch

from scaling.config import ConfigError, load_config
from scaling.data.toy import tiny_run_overrides
from scaling.models.builder import build_model
from scaling.training import checkpoint as ckpt
from scaling.training import recompute
from scaling.training.loop import read_log, train


def tiny_sizes(method):
    """The presets' level/layer counts scaled to the tiny backbones (ViT: 3 layers, LLaMA: 4)."""
    from scaling.config.methods import METHODS

    preset = METHODS[method]
    out = ["model.frozen_dtype=fp32", f"model.extract.n_levels={min(2, preset['extract']['n_levels'])}"]
    if preset["inject"]["name"] in ("inner", "cross-attention"):
        out += ["model.inject.n_llm_layers=2", "model.inject.n_left=1"]
    return out


def run(tmp_path, name, steps, *extra, **kw):
    cfg = load_config(None, tiny_run_overrides(str(tmp_path / name), steps) + list(extra))
    return train(cfg, **kw)


def losses(out_dir):
    rows = {}
    for row in read_log(out_dir):  # a resumed run appends: the last row of a step wins
        rows[row["step"]] = row
    return rows


def test_learns_and_writes_the_run_files(tmp_path):
    result = run(tmp_path, "run", 14, "train.lr=5e-3", "train.save_every=5", "train.keep_last=2",
                 "train.log_samples=2", "train.tensorboard=true")
    out = result.output_dir
    rows = losses(out)
    first, last = sum(rows[s]["loss"] for s in (1, 2, 3)) / 3, sum(rows[s]["loss"] for s in (12, 13, 14)) / 3
    assert last < first - 0.15, (first, last)  # a random frozen tiny LM caps how far the loss can fall
    assert result.exit_code == 0 and result.state.step == 14 and result.state.skipped_steps == 0
    summary = json.load(open(os.path.join(out, "train_summary.json")))
    assert {"train_seconds", "gpu_type", "n_gpus", "steps"} <= set(summary)
    assert summary["steps"] == 14 and summary["gpu_type"] == "cpu" and summary["train_seconds"] > 0
    assert os.path.isfile(os.path.join(out, "config.yaml"))
    assert os.listdir(os.path.join(out, "tensorboard"))
    assert [s for s, _ in ckpt.list_checkpoints(os.path.join(out, "checkpoints"))] == [10, 14]  # keep_last=2
    assert ckpt.find_latest(out).endswith("step_000014")
    ranks = json.load(open(os.path.join(out, "ranks", "rank00000.json")))
    assert ranks["world_size"] == 1 and ranks["rank"] == 0 and ranks["strategy"] == "accelerate"
    evals = read_log(out, "eval")
    assert evals and "val/loss" in evals[-1]
    assert {"lr", "grad_norm", "perf/samples_per_s", "perf/tokens_per_s", "perf/peak_mem_gb"} <= set(rows[14])


def test_resume_after_a_kill_is_exact(tmp_path):
    # 64 samples / micro 8 / accumulation 2 = 4 steps per epoch: the kill lands mid-epoch, the resumed
    # run crosses an epoch boundary
    extra = ("data.train=toy://colours?n=64", "train.save_every=3")
    full = run(tmp_path, "full", 7, *extra)

    class Killed(Exception):
        pass

    def kill_at_5(step, _):
        if step == 5:
            raise Killed

    with pytest.raises(Killed):
        run(tmp_path, "killed", 7, *extra, on_step=kill_at_5)
    assert ckpt.find_latest(str(tmp_path / "killed")).endswith("step_000003")
    resumed = run(tmp_path, "killed", 7, *extra)
    assert resumed.state.step == 7
    a, b = losses(full.output_dir), losses(resumed.output_dir)
    for step in range(1, 8):
        assert a[step]["loss"] == pytest.approx(b[step]["loss"], rel=1e-6, abs=1e-7), step
        assert a[step]["grad_norm"] == pytest.approx(b[step]["grad_norm"], rel=1e-6), step
        assert a[step]["lr"] == pytest.approx(b[step]["lr"], rel=1e-9), step
    wa, _ = ckpt.read_adapter(full.output_dir)
    wb, _ = ckpt.read_adapter(resumed.output_dir)
    for name in wa:
        torch.testing.assert_close(wa[name], wb[name], rtol=1e-6, atol=1e-7)

    # another world size cannot resume this run (per-rank data position and partitions)
    state_path = os.path.join(ckpt.find_latest(resumed.output_dir), ckpt.STATE)
    state = json.load(open(state_path))
    state["world_size"] = 2
    json.dump(state, open(state_path, "w"))
    with pytest.raises(ConfigError, match="written by 2 ranks"):
        run(tmp_path, "killed", 9, *extra)


class Killed(Exception):
    pass


def kill_at(step):
    def on_step(s, _):
        if s == step:
            raise Killed
    return on_step


def test_resume_between_two_log_lines_counts_and_logs_like_an_uninterrupted_run(tmp_path):
    # save_every=3 is not a multiple of log_every=2: the step-3 checkpoint falls inside the window of steps 3-4
    extra = ("data.train=toy://colours?n=64", "train.save_every=3", "train.log_every=2")
    full = run(tmp_path, "full", 7, *extra)
    with pytest.raises(Killed):
        run(tmp_path, "killed", 7, *extra, on_step=kill_at(5))
    latest = ckpt.find_latest(str(tmp_path / "killed"))
    assert latest.endswith("step_000003")
    saved = ckpt.read_json(os.path.join(latest, ckpt.STATE))
    assert saved["samples_seen"] == 3 * 16 and saved["tokens_seen"] > 0  # exact at the checkpoint, not at the log line
    resumed = run(tmp_path, "killed", 7, *extra)
    assert full.state.samples_seen == resumed.state.samples_seen == 7 * 16
    assert full.state.tokens_seen == resumed.state.tokens_seen
    summaries = [json.load(open(os.path.join(r.output_dir, "train_summary.json"))) for r in (full, resumed)]
    assert summaries[0]["samples_seen"] == summaries[1]["samples_seen"] == 7 * 16
    a, b = losses(full.output_dir), losses(resumed.output_dir)
    assert sorted(a) == sorted(b) == [2, 4, 6, 7]
    for step in (4, 6, 7):  # step 4's line covers step 3 (before the kill) and step 4 (after the resume)
        assert a[step]["loss"] == pytest.approx(b[step]["loss"], rel=1e-6, abs=1e-7), step
        assert a[step]["grad_norm"] == pytest.approx(b[step]["grad_norm"], rel=1e-6), step
        assert a[step]["lr"] == pytest.approx(b[step]["lr"], rel=1e-9), step


def test_resume_with_another_batch_geometry_is_refused_mid_epoch_and_allowed_at_an_epoch_end(tmp_path):
    # 64 samples / micro 8 / accumulation 2 = 4 steps per epoch: the step-3 checkpoint is mid-epoch
    extra = ("data.train=toy://colours?n=64",)
    run(tmp_path, "geo", 3, *extra)
    with pytest.raises(ConfigError, match=r"accumulation 2 .*train\.global_batch 16.*accumulation 4 .*"
                                          r"Resume with train\.micro_batch=8 train\.global_batch=16.*another train\.output_dir"):
        run(tmp_path, "geo", 8, *extra, "train.global_batch=32")
    with pytest.raises(ConfigError, match=r"micro batch 8 × accumulation 2.*micro batch 16 × accumulation 1"):
        run(tmp_path, "geo", 8, *extra, "train.micro_batch=16")
    # at the end of an epoch nothing of the old geometry is left to replay: the next epoch uses the new one
    assert run(tmp_path, "geo", 4, *extra).state.step == 4
    result = run(tmp_path, "geo", 5, *extra, "train.global_batch=32")
    assert result.state.step == 5 and result.state.epoch == 1 and result.state.step_in_epoch == 1
    state = ckpt.read_json(os.path.join(ckpt.find_latest(result.output_dir), ckpt.STATE))
    assert state["accumulation"] == 4 and state["micro_batch"] == 8
    assert state["samples_seen"] == 4 * 16 + 32


def test_a_loader_shorter_than_its_len_is_an_error_not_a_bare_stop_iteration(tmp_path):
    from scaling.training import loaders

    class Short:  # claims two micro batches more than it yields
        def __init__(self, inner):
            self.inner = inner

        def __len__(self):
            return len(self.inner) + 2

        def __iter__(self):
            return iter(self.inner)

    def loader_fn(*args, **kwargs):
        return Short(loaders.build(*args, **kwargs))

    # 32 samples / micro 8 = 4 real micro batches, 6 by len(): the third step runs out
    with pytest.raises(RuntimeError, match="ran out of batches in epoch 0 at micro batch 1 of optimizer step 3"):
        run(tmp_path, "short", 10, "data.train=toy://colours?n=32", loader_fn=loader_fn)


def test_resume_applies_a_changed_lr_and_total_steps_from_the_next_step(tmp_path, capsys):
    from scaling.training.loop import Trainer
    from scaling.training.schedule import schedule_factor

    run(tmp_path, "lr", 4)
    capsys.readouterr()
    cfg = load_config(None, tiny_run_overrides(str(tmp_path / "lr"), 8) + ["train.lr=0.03"])
    trainer = Trainer(cfg)
    trainer.setup()
    err = capsys.readouterr().err
    assert "total steps changed from 4 to 8" in err and "train.lr changed from 0.003 to 0.03" in err
    t = cfg.train
    expected = {s: 0.03 * schedule_factor(s - 1, 8, t.warmup_fraction, t.min_lr_ratio, trainer.accum, t.schedule_unit)
                for s in range(5, 9)}
    # the rate the optimizer applies at step 5, not only the logged one
    assert [g["lr"] for g in trainer.strategy.optimizer.param_groups] == pytest.approx([expected[5]] * 2, rel=1e-12)
    trainer.run()
    rows = losses(str(tmp_path / "lr"))
    for step in range(5, 9):
        assert rows[step]["lr"] == pytest.approx(expected[step], rel=1e-9), step


def test_a_nonfinite_loss_skips_the_step_and_training_goes_on(tmp_path):
    # batch 2 of the epoch (the first micro batch of step 2) holds NaN images
    result = run(tmp_path, "nan", 5, "data.train=toy://colours?n=256&nan_batches=2")
    assert result.state.skipped_steps == 1
    rows = losses(result.output_dir)
    assert rows[2]["nonfinite_losses"] == 1 and rows[2].get("grad_norm") is None
    assert rows[3]["lr"] == pytest.approx(rows[2]["lr"])  # the schedule did not advance on the skipped step
    assert all(torch.isfinite(t).all() for t in ckpt.read_adapter(result.output_dir)[0].values())
    assert rows[5]["loss"] == rows[5]["loss"]  # finite again


@pytest.mark.parametrize("method", ["depalm", "depalm-qp-inner", "depalm-c-attn", "epalm", "epalm-ada", "limber-1"])
def test_every_trainable_parameter_gets_a_gradient_even_without_targets(method):
    cfg = load_config(None, [f"model.method={method}", "model.llm=tiny-llama", "model.encoder=tiny-vit",
                             *tiny_sizes(method)])
    model = build_model(cfg.model)
    model.train()
    ids = torch.randint(5, 200, (2, 6))
    for labels in (ids.clone(), torch.full_like(ids, -100)):  # the second batch has no target at all
        model.zero_grad(set_to_none=True)
        out = model(input_ids=ids, attention_mask=torch.ones_like(ids), labels=labels, pixel_values=torch.rand(2, 3, 32, 32))
        out["loss"].backward()
        missing = [n for n, p in model.trainable_named_parameters() if p.grad is None]
        assert not missing, f"{method}: no gradient for {missing[:5]} (ZeRO-2 would hang)"
    assert all(p.grad is None for p in model.parameters() if not p.requires_grad)


@pytest.mark.parametrize("method", ["epalm-ada", "depalm-qp-inner"])
def test_gradient_checkpointing_gives_the_same_gradients_with_frozen_embeddings(method):
    cfg = load_config(None, [f"model.method={method}", "model.llm=tiny-llama", "model.encoder=tiny-vit",
                             *tiny_sizes(method)])
    torch.manual_seed(0)
    plain = build_model(cfg.model)
    torch.manual_seed(0)
    ckpted = build_model(cfg.model)
    assert recompute.enable(ckpted) == ckpted.layout.n_layers
    ids = torch.randint(5, 200, (2, 7))
    labels = ids.clone()
    labels[:, :3] = -100
    batch = dict(input_ids=ids, attention_mask=torch.ones_like(ids), labels=labels, pixel_values=torch.rand(2, 3, 32, 32))
    grads = []
    for model in (plain, ckpted):
        model.eval()  # no dropout: the two passes must match exactly
        model(**batch)["loss"].backward()
        grads.append({n: p.grad for n, p in model.trainable_named_parameters()})
    assert grads[0].keys() == grads[1].keys()
    for name in grads[0]:
        torch.testing.assert_close(grads[0][name], grads[1][name], rtol=1e-5, atol=1e-7, msg=name)
    assert any(g.abs().sum() > 0 for n, g in grads[1].items() if n.startswith("adapters") or n.startswith("mapper"))


def test_eval_hook_keeps_the_best_adapter_and_writes_metrics(tmp_path):
    calls = []

    def evaluate_fn(model, step):
        assert not model.training
        calls.append(step)
        return {"CIDEr": {2: 0.5, 4: 0.9, 6: 0.7}[step], "BLEU-4": 0.1}

    result = run(tmp_path, "hook", 6, "train.eval_every=2", evaluate_fn=evaluate_fn)
    assert calls == [2, 4, 6]
    assert result.state.best == {"metric": "CIDEr", "value": 0.9, "step": 4}
    _, meta = ckpt.read_adapter(os.path.join(result.output_dir, "best", "adapter.safetensors"))
    assert meta["step"] == 4
    metrics = json.load(open(os.path.join(result.output_dir, "metrics.json")))
    assert metrics["task"] == "caption" and metrics["metrics"]["CIDEr"] == 0.7 and metrics["best"]["step"] == 4


def test_fp8_llm_run_learns_and_its_adapter_loads_on_the_fp8_and_the_dense_model(tmp_path):
    """``model.fp8_llm`` through the trainer (CPU: the FP8 GEMM's CPU kernel): fused and quantised after
    the strategy wrapped the model, fingerprints taken before, so the adapter loads on either build."""
    from scaling.models.fp8 import Fp8Linear

    result = run(tmp_path, "fp8", 14, "train.lr=5e-3", "model.fp8_llm=true", "train.device=cpu")  # fp32 weights: CPU only
    rows = losses(result.output_dir)
    first, last = sum(rows[s]["loss"] for s in (1, 2, 3)) / 3, sum(rows[s]["loss"] for s in (12, 13, 14)) / 3
    assert last < first - 0.15, (first, last)
    ranks = json.load(open(os.path.join(result.output_dir, "ranks", "rank00000.json")))
    n_layers = ranks["fused_llm_layers"]
    assert n_layers >= 2 and ranks["fp8_llm_layers"] == n_layers
    fp8_model, _ = ckpt.load_adapter(result.output_dir)
    assert isinstance(fp8_model.layout.layers[0].mlp.down_proj, Fp8Linear)
    dense_model, _ = ckpt.load_adapter(result.output_dir, overrides=["model.fp8_llm=false"])
    assert type(dense_model.layout.layers[0].mlp.down_proj) is torch.nn.Linear


def test_resume_never_refuses_a_run_directory_that_holds_checkpoints(tmp_path):
    """Starting afresh over an earlier run's checkpoints would mix the two (pruning keeps the highest steps)."""
    run(tmp_path, "old", 2)
    with pytest.raises(ConfigError, match=r"checkpoints of an earlier run \(step_0+2 the newest\).*another train\.output_dir"):
        run(tmp_path, "old", 2, "train.resume=never")
    assert run(tmp_path, "fresh", 1, "train.resume=never").state.step == 1  # an empty directory is fine
