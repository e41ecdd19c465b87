"""AdamW over trainable parameters only; no weight decay on biases, norms and 1-D parameters."""

import torch

from scaling.config import load_config
from scaling.models.builder import build_model
from scaling.training.optim import build_optimizer, param_groups


def test_groups_split_matrices_from_vectors():
    lin = torch.nn.Linear(4, 4)
    norm = torch.nn.LayerNorm(4)
    q = torch.nn.Parameter(torch.zeros(3, 4))
    named = [("lin.weight", lin.weight), ("lin.bias", lin.bias), ("norm.weight", norm.weight), ("queries", q)]
    groups = param_groups(named, 0.1)
    by_name = {g["name"]: g for g in groups}
    assert {id(p) for p in by_name["decay"]["params"]} == {id(lin.weight), id(q)}
    assert {id(p) for p in by_name["no_decay"]["params"]} == {id(lin.bias), id(norm.weight)}
    assert by_name["decay"]["weight_decay"] == 0.1 and by_name["no_decay"]["weight_decay"] == 0.0
    assert len(param_groups(named, 0.1, decay_1d=True)) == 1


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
