"""Gradients reach only trainable parameters; the loss covers answer tokens only."""

import pytest
import torch
import torch.nn.functional as F

from scaling.config.model import model_config
from scaling.models.builder import build_model
from scaling.models.tiny import tiny_media

SMALL = {
    "depalm": {"map": {"d_embed": 32}},
    "limber-all": {},
    "mapl": {"map": {"d_embed": 32}},
    "epalm": {"extract": {"n_levels": 3}, "inject": {"n_llm_layers": 3, "n_left": 1}},
    "epalm-ada": {"extract": {"n_levels": 3}, "inject": {"n_llm_layers": 3, "n_left": 1}},
    "depalm-qp-inner": {"extract": {"n_levels": 2}, "inject": {"n_llm_layers": 2, "n_left": 1}, "map": {"d_embed": 32}},
    "depalm-c-attn": {"extract": {"n_levels": 2}, "inject": {"n_llm_layers": 2, "n_left": 1}, "map": {"d_embed": 32}},
    "depalm-r-avgpool": {},
    "depalm-r-linear": {},
    "depalm-r-qpmapper": {"map": {"d_embed": 32}},
    "depalm-r-rand": {},
}


@pytest.mark.parametrize("method", sorted(SMALL))
def test_gradients_reach_only_trainable_parameters(backbones, method):
    cfg = model_config(method=method, llm=backbones["llama"], encoder=backbones["vit"], frozen_dtype="fp32", **SMALL[method])
    model = build_model(cfg).train()
    if method == "depalm-c-attn":  # with the gate at 0 nothing upstream of it gets a gradient
        with torch.no_grad():
            model.injection.block.gate.fill_(0.3)
    ids = torch.randint(5, 90, (2, 8))
    labels = ids.clone()
    labels[:, :4] = -100
    model(input_ids=ids, labels=labels, **tiny_media("vit"))["loss"].backward()
    trainable = dict(model.trainable_named_parameters())
    assert trainable, "a method must train something"
    for name, p in model.named_parameters():
        if name in trainable:
            assert p.grad is not None, f"{method}: trainable {name} got no gradient (ZeRO-2 would hang)"
        else:
            assert not p.requires_grad and p.grad is None, f"{method}: frozen {name} has a gradient"
    assert not any(n.startswith("llm.") or n.startswith("extractor.") for n in trainable)


def test_bias_tuning_and_lora_train_only_their_backbone_parameters(backbones):
    cfg = model_config(method="depalm", llm=backbones["llama"], encoder=backbones["vit"], frozen_dtype="fp32",
                       map={"d_embed": 32}, finetune={"n_prompt": 1, "bias_tuning": "both", "lora_rank": 4})
    model = build_model(cfg).train()
    trainable = [n for n, _ in model.trainable_named_parameters()]
    llm_trainable = [n for n in trainable if n.startswith("llm.")]
    assert any("lora_A" in n for n in llm_trainable) and any("q_proj" in n and n.endswith(".bias") for n in llm_trainable)
    assert any(n.startswith("extractor.") and n.endswith(".bias") for n in trainable)
    assert not any(n.endswith("q_proj.weight") or n.endswith("base_layer.weight") for n in trainable)
    ids = torch.randint(5, 90, (2, 6))
    model(input_ids=ids, labels=ids, **tiny_media("vit"))["loss"].backward()
    for n, p in model.named_parameters():
        assert (p.grad is not None) == p.requires_grad, n


def test_loss_is_computed_on_answer_tokens_only(backbones):
    cfg = model_config(method="depalm", llm=backbones["opt"], encoder=backbones["vit"], frozen_dtype="fp32",
                       map={"d_embed": 32}, label_smoothing=0.0)
    model = build_model(cfg).eval()
    media = tiny_media("vit")
    ids = torch.randint(5, 90, (2, 10))
    labels = ids.clone()
    labels[:, :6] = -100  # the prompt
    out = model(input_ids=ids, labels=labels, return_logits=True, **media)
    logits = out["logits"][:, :-1]
    # the logits of text position t predict token t+1; the first text token is predicted by the last prefix token
    manual = F.cross_entropy(logits[:, 5:].reshape(-1, logits.shape[-1]).float(), ids[:, 6:].reshape(-1))
    assert torch.allclose(out["loss"], manual, atol=1e-5)
    assert int(out["n_targets"]) == 2 * 4
    # changing prompt-position labels to other tokens does not change the loss (they are masked)
    other = labels.clone()
    other[:, :6] = -100
    assert torch.equal(model(input_ids=ids, labels=other, **media)["loss"], out["loss"])
    # label smoothing is applied when configured
    model.label_smoothing = 0.1
    smoothed = model(input_ids=ids, labels=labels, **media)["loss"]
    ref = F.cross_entropy(logits[:, 5:].reshape(-1, logits.shape[-1]).float(), ids[:, 6:].reshape(-1), label_smoothing=0.1)
    assert torch.allclose(smoothed, ref, atol=1e-5) and not torch.allclose(smoothed, manual)


def test_a_batch_without_targets_still_reaches_every_trainable_parameter(backbones):
    cfg = model_config(method="depalm", llm=backbones["llama"], encoder=backbones["vit"], frozen_dtype="fp32", map={"d_embed": 32})
    model = build_model(cfg).train()
    ids = torch.randint(5, 90, (2, 6))
    out = model(input_ids=ids, labels=torch.full_like(ids, -100), **tiny_media("vit"))
    assert out["loss"].item() == 0.0
    out["loss"].backward()
    assert all(p.grad is not None for _, p in model.trainable_named_parameters())
