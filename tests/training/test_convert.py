"""scaling convert / inspect: adapter, peft and consolidated forms give the trained model back exactly."""

import json
import os

import pytest
import torch
from safetensors.torch import load_file

from scaling.cli.main import main as cli
from scaling.config import ConfigError, load_config
from scaling.data.toy import tiny_run_overrides
from scaling.models.tiny import save_tiny_encoder, save_tiny_llm
from scaling.training import checkpoint as ckpt
from scaling.training.convert import convert, describe
from scaling.training.loop import Trainer


@pytest.fixture(scope="module")
def backbones(tmp_path_factory):
    root = tmp_path_factory.mktemp("bb")
    return save_tiny_llm(str(root / "llama"), "llama"), save_tiny_encoder(str(root / "vit"), "vit")


def trained(out_dir, llm, vit, *extra):
    cfg = load_config(None, tiny_run_overrides(out_dir, 3) + [f"model.llm={llm}", f"model.encoder={vit}", *extra])
    trainer = Trainer(cfg)
    trainer.setup()
    trainer.run()
    trainer.model.eval()
    return trainer.model


def batch():
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(5, 40, (2, 6), generator=g)
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids), "pixel_values": torch.rand(2, 3, 32, 32, generator=g)}


def test_adapter_and_consolidated_round_trip(tmp_path, backbones):
    run = str(tmp_path / "run")
    model = trained(run, *backbones)
    with torch.no_grad():
        expected = model(**batch(), return_logits=True)["logits"]

    out = convert(run, "adapter", str(tmp_path / "exported" / "a.safetensors"))
    fresh, cfg = ckpt.load_adapter(out, "cpu")
    with torch.no_grad():
        assert torch.equal(fresh(**batch(), return_logits=True)["logits"], expected)
    assert cfg.model.llm == backbones[0]

    cons = load_file(convert(run, "consolidated", str(tmp_path / "c.safetensors")))
    assert cons.keys() == model.trainable_state_dict().keys()
    for name, value in model.trainable_state_dict().items():
        assert torch.equal(cons[name], value.float())

    with pytest.raises(ConfigError, match="no LoRA weights"):
        convert(run, "peft", str(tmp_path / "peft"))


def test_peft_export_loads_with_peft(tmp_path, backbones):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    run = str(tmp_path / "lora")
    model = trained(run, *backbones, "model.finetune.lora_rank=4")
    out = convert(run, "peft", str(tmp_path / "peft"))
    assert {"adapter_config.json", "adapter_model.safetensors", "scaling_adapter.safetensors"} <= set(os.listdir(out))
    base = AutoModelForCausalLM.from_pretrained(backbones[0], dtype=torch.float32)
    peft_model = PeftModel.from_pretrained(base, out).eval()
    ids = batch()["input_ids"]
    with torch.no_grad():
        torch.testing.assert_close(peft_model(input_ids=ids).logits, model.llm(input_ids=ids).logits, rtol=0, atol=0)
    # the LoRA weights really moved during training (B starts at zero)
    lora_b = [v for k, v in load_file(os.path.join(out, "adapter_model.safetensors")).items() if "lora_B" in k]
    assert lora_b and any(v.abs().sum() > 0 for v in lora_b)


def test_inspect_prints_method_backbones_step_counts(tmp_path, backbones, capsys):
    run = str(tmp_path / "run")
    trained(run, *backbones)
    assert cli(["inspect", run, "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["method"] == "depalm" and info["step"] == 3
    assert info["backbones"]["llm"] == backbones[0] and "LlamaForCausalLM" in info["backbones"]["llm_architecture"]
    assert info["trainable_parameters"] == sum(info["parameters_by_component"].values()) > 0
    assert info["checkpoint"]["format"] == "torch" and info["checkpoint"]["world_size"] == 1
    assert "val_loss" in info["metrics"]
    assert cli(["inspect", os.path.join(ckpt.find_latest(run), "adapter.safetensors")]) == 0
    text = capsys.readouterr().out
    assert "method: depalm" in text and "trainable parameters" in text
    assert describe(run)["step"] == 3


def test_convert_and_inspect_accept_the_best_adapter_directory(tmp_path, backbones, capsys):
    run = str(tmp_path / "run")
    model = trained(run, *backbones, "eval.metric=val_loss")  # evaluated at the end: RUN/best holds the last step
    best = os.path.join(run, "best")
    assert os.listdir(best) and not os.path.isfile(os.path.join(best, ckpt.STATE))
    out = str(tmp_path / "best.safetensors")
    assert cli(["convert", best, "--to", "adapter", out]) == 0
    fresh, _ = ckpt.load_adapter(out, "cpu")
    with torch.no_grad():
        expected = model(**batch(), return_logits=True)["logits"]
        assert torch.equal(fresh(**batch(), return_logits=True)["logits"], expected)
    cons = load_file(convert(best, "consolidated", str(tmp_path / "c.safetensors")))
    assert cons.keys() == model.trainable_state_dict().keys()
    with pytest.raises(ConfigError, match="without --from-shards"):
        convert(best, "adapter", str(tmp_path / "x.safetensors"), from_shards=True)
    capsys.readouterr()
    assert cli(["inspect", best, "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["step"] == 3 and info["method"] == "depalm" and "checkpoint" not in info
    assert cli(["inspect", best]) == 0
    assert "step: 3" in capsys.readouterr().out


class _RunsCode:
    """A pickle that runs code when unpickled without weights_only (here: creates a file)."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_zero_partitions_are_unpickled_weights_only(tmp_path):
    """DeepSpeed's zero_to_fp32 calls torch.load(weights_only=False); the conversion must never run a crafted file."""
    import shutil

    from scaling.training.convert import load_weights

    run = tmp_path / "run"
    Trainer_cfg = load_config(None, tiny_run_overrides(str(run), 1))
    trainer = Trainer(Trainer_cfg)
    trainer.setup()
    trainer.run()
    crafted = tmp_path / "crafted"
    shutil.copytree(ckpt.find_latest(str(run)), crafted)
    os.makedirs(crafted / "deepspeed")
    marker = tmp_path / "code-ran"
    for name in ("mp_rank_00_model_states.pt", "zero_pp_rank_0_mp_rank_00_optim_states.pt"):
        torch.save({"x": _RunsCode(str(marker))}, crafted / "deepspeed" / name)
    with pytest.raises(Exception, match="(?i)weights.only|unsupported global|not allowed"):
        load_weights(str(crafted), from_shards=True)
    with pytest.raises(Exception, match="(?i)weights.only|unsupported global|not allowed"):
        convert(str(crafted), "consolidated", str(tmp_path / "out.safetensors"))
    assert not marker.exists(), "a crafted ZeRO partition ran code during conversion"


def test_peft_export_refuses_llm_weights_it_cannot_hold_and_from_shards_is_adapter_only(tmp_path, backbones):
    run = str(tmp_path / "lora_bias")
    trained(run, *backbones, "model.finetune.lora_rank=4", "model.finetune.bias_tuning=llm")
    with pytest.raises(ConfigError, match=r"LLM tensor\(s\) that are not LoRA.*--to adapter"):
        convert(run, "peft", str(tmp_path / "peft"))
    assert not os.path.exists(tmp_path / "peft")
    for fmt in ("peft", "consolidated"):
        with pytest.raises(ConfigError, match=r"--from-shards applies to --to adapter only"):
            convert(run, fmt, str(tmp_path / f"x_{fmt}"), from_shards=True)
    assert os.path.isfile(convert(run, "consolidated", str(tmp_path / "c.safetensors")))
