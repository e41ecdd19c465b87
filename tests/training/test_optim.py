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
