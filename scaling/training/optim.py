"""AdamW over the trainable parameters only (frozen backbones never enter the optimizer).

Recipe of the official DePALM code (``config/run.yaml`` ``training.optimizer``): AdamW, eps 1e-4,
weight decay 0.1 on **every** trainable parameter, one parameter group per category whose learning
rate and weight decay ``training.optimizer.overwrite`` may override. ``scaling`` does the same:

* the trainable parameters are sorted into categories by the module that owns them
  (:data:`PARAM_CATEGORIES`: ``mapper``, ``injection``, ``prompt``, ``llm``, ``encoder``, ``other``);
  the official categories are ``adapter`` (≈ ``mapper`` + ``injection``), ``cross_attn`` (the
  c-attn blocks: ``injection``), ``prompt``, ``model_text`` (``llm``) and ``feat_model`` (``encoder``);
* ``train.param_groups`` overrides ``lr`` and/or ``weight_decay`` per category, e.g.
  ``{prompt: {lr: 1.0e-5}}`` (eP-ALM's separate prompt learning rate);
* ``train.decay_1d=false`` keeps biases, norm scales and other 1-D parameters out of weight decay
  (the usual transformer convention; not what the official code does), splitting each category in two.

With DeepSpeed's CPU optimizer offload the optimizer must be DeepSpeed's ``DeepSpeedCPUAdam``
(AdamW mode); :func:`build_optimizer` returns it when asked.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

# category -> top-level modules of scaling.models.model.PerceptualLM whose parameters it holds (defined with the
# train.param_groups option it validates; re-exported here)
from scaling.config.train import GROUP_KEYS, PARAM_CATEGORIES  # noqa: F401 - GROUP_KEYS re-exported


def param_category(name: str) -> str:
    """Category of a parameter from its name in the model (``mapper.nets.0.weight`` → ``mapper``)."""
    head = name.split(".", 1)[0]
    for cat, modules in PARAM_CATEGORIES.items():
        if head in modules:
            return cat
    return "other"


def group_peak_lr(group_name: str, lr: float, overrides: Mapping[str, Mapping[str, float]] | None = None) -> float:
    """The peak learning rate of the group called ``group_name`` (``prompt`` or ``prompt/no_decay``)."""
    return float((overrides or {}).get(group_name.split("/", 1)[0], {}).get("lr", lr))


def param_groups(
    named_params: list[tuple[str, nn.Parameter]], weight_decay: float, decay_1d: bool = True,
    overrides: Mapping[str, Mapping[str, float]] | None = None, lr: float | None = None,
) -> list[dict]:
    """One AdamW group per category holding trainable parameters (named after it), in the order of
    :data:`PARAM_CATEGORIES`, with the category's ``overrides`` applied. ``decay_1d=False`` splits a
    category into ``<cat>`` (≥2-D weights) and ``<cat>/no_decay`` (biases, norms, 1-D vectors;
    weight decay 0)."""
    overrides = overrides or {}
    buckets: dict[str, list[nn.Parameter]] = {}
    for name, p in named_params:
        if not p.requires_grad:
            continue
        cat = param_category(name)
        one_d = p.ndim < 2 or name.endswith(".bias") or "norm" in name.lower()
        key = f"{cat}/no_decay" if (one_d and not decay_1d) else cat
        buckets.setdefault(key, []).append(p)
    groups = []
    for cat in PARAM_CATEGORIES:
        over = dict(overrides.get(cat, {}))
        for key in (cat, f"{cat}/no_decay"):
            if key not in buckets:
                continue
            group = {"params": buckets[key], "name": key, "weight_decay": float(over.get("weight_decay", weight_decay))}
            if key.endswith("/no_decay"):
                group["weight_decay"] = 0.0
            if "lr" in over or lr is not None:
                group["lr"] = group_peak_lr(key, lr if lr is not None else 0.0, overrides)
            groups.append(group)
    return groups


def build_optimizer(
    named_params: list[tuple[str, nn.Parameter]],
    lr: float,
    weight_decay: float = 0.1,
    decay_1d: bool = True,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-4,
    cpu_offload: bool = False,
    fused: bool = False,
    overrides: Mapping[str, Mapping[str, float]] | None = None,
) -> torch.optim.Optimizer:
    """AdamW on the trainable parameters (``requires_grad``) only, one group per category
    (:func:`param_groups`). ``fused``: PyTorch's single-kernel AdamW (the trainer asks for it on CUDA
    without DeepSpeed; same update as the default one)."""
    groups = param_groups(named_params, weight_decay, decay_1d, overrides, lr)
    if not groups:
        raise ValueError("the model has no trainable parameter: nothing to optimise (check the method preset)")
    if cpu_offload:
        from deepspeed.ops.adam import DeepSpeedCPUAdam

        return DeepSpeedCPUAdam(groups, lr=lr, betas=betas, eps=eps, adamw_mode=True)
    return torch.optim.AdamW(groups, lr=lr, betas=betas, eps=eps, fused=fused or None)


# the groups of checkpoints written before the per-category grouping (config format 1): one ``decay`` group of
# the >= 2-D weights and one ``no_decay`` group of the rest (or everything in ``decay`` with train.decay_1d=true),
# each in the model's parameter order
OLD_GROUPS = ("decay", "no_decay")


def migrate_state_dict(saved: dict, optimizer: torch.optim.Optimizer, named: list[tuple[str, nn.Parameter]],
                       source: str = "the checkpoint") -> dict:
    """An optimizer state dict of an older grouping (:data:`OLD_GROUPS`) re-indexed for ``optimizer``'s groups
    (one per category, :func:`param_groups`); the current grouping is returned as it is. Each parameter keeps its
    Adam moments and step; each new group takes the hyperparameters of the old group of its kind. Anything else
    is refused with the fix."""
    old_names = [g.get("name") for g in saved.get("param_groups", [])]
    new_groups = optimizer.param_groups
    if old_names == [g.get("name") for g in new_groups]:
        return saved
    if not old_names or not set(old_names) <= set(OLD_GROUPS):
        raise ValueError(f"{source}'s optimizer groups {old_names} match neither this optimizer's "
                         f"{[g.get('name') for g in new_groups]} nor the older decay/no_decay grouping: resume with the "
                         f"train.param_groups / train.decay_1d it was written with, or start a new run from its weights")
    kind = {id(p): ("no_decay" if str(g.get("name", "")).endswith("/no_decay") else "decay")
            for g in new_groups for p in g["params"]}
    order = [p for _, p in named if id(p) in kind]
    old_index: dict[int, int] = {}
    old_group_of: dict[str, dict] = {}
    for group in saved["param_groups"]:
        members = [p for p in order if kind[id(p)] == group["name"] or (len(old_names) == 1 and group["name"] == "decay")]
        if len(members) != len(group["params"]):
            raise ValueError(f"{source}'s optimizer group {group['name']!r} holds {len(group['params'])} parameters, this "
                             f"model has {len(members)} of that kind: resume with the train.decay_1d and method it was "
                             f"written with, or start a new run from its weights")
        old_index.update({id(p): i for p, i in zip(members, group["params"])})
        old_group_of[group["name"]] = group
    current = optimizer.state_dict()
    state, groups, index = {}, [], 0
    for live, desc in zip(new_groups, current["param_groups"]):
        src = old_group_of.get("no_decay" if str(live.get("name", "")).endswith("/no_decay") else "decay") \
            or old_group_of[old_names[0]]
        group = {**{k: v for k, v in src.items() if k not in ("params", "name")}, "name": desc.get("name"),
                 "weight_decay": desc["weight_decay"], "params": []}
        for p in live["params"]:
            old = old_index[id(p)]
            if old in saved["state"]:
                state[index] = saved["state"][old]
            group["params"].append(index)
            index += 1
        groups.append(group)
    return {"state": state, "param_groups": groups}
