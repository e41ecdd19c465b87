"""AdamW over trainable parameters only; no weight decay on biases, norms and 1-D parameters."""

import pytest
import torch

from scaling.config import load_config
from scaling.models.builder import build_model
from scaling.training.optim import build_optimizer, param_groups


def test_weight_decay_on_every_parameter_by_default_and_matrices_only_on_request():
    lin = torch.nn.Linear(4, 4)
    norm = torch.nn.LayerNorm(4)
    q = torch.nn.Parameter(torch.zeros(3, 4))
    named = [("mapper.lin.weight", lin.weight), ("mapper.lin.bias", lin.bias), ("mapper.norm.weight", norm.weight),
             ("mapper.queries", q)]
    (only,) = param_groups(named, 0.1)  # official: one group per category, wd 0.1 on all of it
    assert only["name"] == "mapper" and only["weight_decay"] == 0.1 and len(only["params"]) == 4
    by_name = {g["name"]: g for g in param_groups(named, 0.1, decay_1d=False)}
    assert {id(p) for p in by_name["mapper"]["params"]} == {id(lin.weight), id(q)}
    assert {id(p) for p in by_name["mapper/no_decay"]["params"]} == {id(lin.bias), id(norm.weight)}
    assert by_name["mapper"]["weight_decay"] == 0.1 and by_name["mapper/no_decay"]["weight_decay"] == 0.0


def test_param_groups_override_lr_and_weight_decay_per_category():
    """train.param_groups (official training.optimizer.overwrite) builds one group per category with its values."""
    from scaling.config import ConfigError

    cfg = load_config(None, ["model.method=epalm", "model.llm=tiny-opt", "model.encoder=tiny-vit", "model.frozen_dtype=fp32",
                             "model.extract.n_levels=2", "model.inject.n_llm_layers=2", "model.inject.n_left=1",
                             "train.param_groups.prompt.lr=1e-5",
                             "train.param_groups.mapper.weight_decay=0.02"])
    assert cfg.train.param_groups == {"prompt": {"lr": 1e-5}, "mapper": {"weight_decay": 0.02}}
    model = build_model(cfg.model)
    t = cfg.train
    opt = build_optimizer(model.trainable_named_parameters(), 2e-5, t.weight_decay, t.decay_1d, eps=t.adam_eps,
                          overrides=t.param_groups)
    groups = {g["name"]: g for g in opt.param_groups}
    assert set(groups) == {"mapper", "prompt"}
    named = dict(model.trainable_named_parameters())
    assert {id(p) for p in groups["prompt"]["params"]} == {id(p) for n, p in named.items() if n.startswith("prompt.")}
    assert {id(p) for p in groups["mapper"]["params"]} == {id(p) for n, p in named.items() if n.startswith("mapper.")}
    assert groups["prompt"]["lr"] == 1e-5 and groups["prompt"]["weight_decay"] == 0.1
    assert groups["mapper"]["lr"] == 2e-5 and groups["mapper"]["weight_decay"] == 0.02
    assert opt.defaults["eps"] == 1e-4
    # the scheduler scales each group's own peak rate
    from scaling.training.schedule import build_scheduler

    build_scheduler(opt, 10, unit="optimizer_step")
    assert groups["prompt"]["lr"] == pytest.approx(1e-5 * 1e-4) and groups["mapper"]["lr"] == pytest.approx(2e-5 * 1e-4)
    for bad, msg in (("train.param_groups.adapter.lr=1e-3", "unknown category 'adapter'"),
                     ("train.param_groups.prompt.momentum=0.9", "unknown key 'momentum'"),
                     ("train.param_groups.prompt.lr=-1", "must be > 0")):
        with pytest.raises(ConfigError, match=msg):
            load_config(None, [bad])


def test_frozen_backbones_never_enter_the_optimizer():
    cfg = load_config(None, ["model.method=depalm", "model.llm=tiny-llama", "model.encoder=tiny-vit",
                             "model.frozen_dtype=fp32", "model.map.d_embed=32"])
    model = build_model(cfg.model)
    opt = build_optimizer(model.trainable_named_parameters(), 1e-3)
    in_opt = {id(p) for g in opt.param_groups for p in g["params"]}
    trainable = {id(p) for _, p in model.trainable_named_parameters()}
    frozen = {id(p) for p in model.parameters() if not p.requires_grad}
    assert in_opt == trainable
    assert not in_opt & frozen
    assert frozen  # the backbones are there, just not optimised


def test_fused_adamw_makes_the_same_update_as_the_default_one():
    """The trainer's CUDA choice (``fused=True``) checked on CPU, where PyTorch also has the fused kernel."""
    torch.manual_seed(0)
    lin_a, lin_b = torch.nn.Linear(5, 3), torch.nn.Linear(5, 3)
    lin_b.load_state_dict(lin_a.state_dict())
    opts = [build_optimizer(list(m.named_parameters()), 1e-2, fused=f) for m, f in ((lin_a, False), (lin_b, True))]
    assert opts[1].defaults["fused"] is True and not opts[0].defaults["fused"]
    x = torch.randn(8, 5)
    start = lin_a.weight.detach().clone()
    for _ in range(3):
        for m, opt in zip((lin_a, lin_b), opts):
            m(x).square().sum().backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
    for pa, pb in zip(lin_a.parameters(), lin_b.parameters()):
        torch.testing.assert_close(pa, pb, rtol=1e-6, atol=1e-7)
    assert not torch.allclose(lin_b.weight, start), "the optimizer must have moved the weights"
