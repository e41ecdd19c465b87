"""A stored config never grants trust: no remote code, no pipe: command, from a file someone else wrote."""

import json
import os
import subprocess
import sys

import pytest
import torch

from scaling.config import load_config, to_dict
from scaling.models.builder import build_model
from scaling.models.tiny import save_tiny_encoder, save_tiny_llm
from scaling.training import checkpoint as ckpt
from scaling.training.fingerprint import model_fingerprints

EVIL = '''
import pathlib
pathlib.Path({marker!r}).write_text("ran")
from transformers import LlamaConfig, LlamaForCausalLM
class EvilConfig(LlamaConfig):
    pass
class EvilModel(LlamaForCausalLM):
    config_class = EvilConfig
'''


@pytest.fixture()
def evil(tmp_path, monkeypatch):
    """A tiny LLaMA directory whose config.json has an auto_map into a module that writes a marker file."""
    monkeypatch.setenv("HF_MODULES_CACHE", str(tmp_path / "hf_modules"))
    llm = save_tiny_llm(str(tmp_path / "llm"), "llama")
    marker = tmp_path / "remote_code_ran"
    (tmp_path / "llm" / "evil.py").write_text(EVIL.format(marker=str(marker)))
    cfg_path = tmp_path / "llm" / "config.json"
    config = json.loads(cfg_path.read_text())
    config["auto_map"] = {"AutoConfig": "evil.EvilConfig", "AutoModelForCausalLM": "evil.EvilModel"}
    cfg_path.write_text(json.dumps(config))
    vit = save_tiny_encoder(str(tmp_path / "vit"), "vit")
    cfg = load_config(None, [f"model.llm={llm}", f"model.encoder={vit}", "model.method=depalm", "model.frozen_dtype=fp32",
                             "model.map.d_embed=32", "model.map.n_queries=4", "data.task=caption"])
    torch.manual_seed(cfg.train.seed)
    model = build_model(cfg.model)
    assert not marker.exists()  # building it ourselves (trust off) runs nothing
    stored = to_dict(cfg)
    stored["model"]["trust_remote_code"] = True  # what a crafted adapter carries
    stored["data"]["test"] = f"pipe:touch {tmp_path / 'pipe_ran'} && cat /dev/null"
    path = str(tmp_path / "evil.safetensors")
    ckpt.save_adapter(path, model.trainable_state_dict(), stored, model_fingerprints(model), step=1)
    return path, marker, tmp_path


def test_an_adapter_cannot_switch_on_trust_remote_code(evil):
    path, marker, _ = evil
    with pytest.warns(UserWarning, match="trust_remote_code"):
        model, cfg = ckpt.load_adapter(path, "cpu")
    assert not marker.exists(), "the adapter's stored config ran the LLM directory's Python code"
    assert cfg.model.trust_remote_code is False
    assert cfg.data.test is None  # the stored pipe: command is dropped
    # the caller's own argument still grants it (and shows the fixture would run code)
    ckpt.load_adapter(path, "cpu", trust_remote_code=True, check_fingerprints=False)
    assert marker.exists()


def test_scaling_eval_runs_neither_the_stored_remote_code_nor_a_stored_pipe_command(evil):
    path, marker, tmp = evil
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "HF_MODULES_CACHE": str(tmp / "hf_modules")}
    proc = subprocess.run([sys.executable, "-m", "scaling", "eval", "--checkpoint", path, "--split", "test"],
                          capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode != 0
    assert "a shell command, which a stored config cannot run" in proc.stderr, proc.stderr[-2000:]
    assert "--data" in proc.stderr
    assert not (tmp / "pipe_ran").exists() and not marker.exists()


@pytest.mark.parametrize("kind", ["symlink", "hardlink", "absolute", "dotdot"])
def test_scaling_data_inspect_exits_1_on_link_absolute_and_dotdot_members(tmp_path, capsys, kind):
    import io
    import random
    import tarfile

    from scaling.cli.main import main
    from scaling.data.shards import ShardSetWriter, iter_members, sample_record
    from scaling.data.synthetic import make_image

    good = str(tmp_path / "train-000000.tar")
    writer = ShardSetWriter(str(tmp_path / "train-%06d.tar"), str(tmp_path), samples_per_shard=10)
    img, color, shape = make_image(random.Random(0), 36)
    buf = io.BytesIO()
    img.save(buf, format="JPEG")
    writer.write("k0000", sample_record("id0", "caption", "x", "train", [f"a {color} {shape}"]), {"jpg": buf.getvalue()})
    writer.close()
    assert main(["data", "inspect", good]) == 0
    bad = str(tmp_path / "bad-000000.tar")
    with tarfile.open(good) as src, tarfile.open(bad, "w", format=tarfile.GNU_FORMAT) as dst:
        for info in src.getmembers():
            dst.addfile(info, src.extractfile(info))
        extra = tarfile.TarInfo({"symlink": "k0001.jpg", "hardlink": "k0002.jpg", "absolute": "/etc/k0003.jpg",
                                 "dotdot": "../outside/k0004.jpg"}[kind])
        if kind == "symlink":
            extra.type, extra.linkname = tarfile.SYMTYPE, "/etc/passwd"
        elif kind == "hardlink":
            extra.type, extra.linkname = tarfile.LNKTYPE, "k0000.jpg"
        data = b"" if kind in ("symlink", "hardlink") else b"x" * 10
        extra.size = len(data)
        dst.addfile(extra, io.BytesIO(data))
    capsys.readouterr()
    assert main(["data", "inspect", bad]) == 1
    out = capsys.readouterr().out
    expected = {"symlink": "symbolic link", "hardlink": "hard link", "absolute": "absolute name", "dotdot": "'..'"}[kind]
    assert "PROBLEMS" in out and expected in out, out
    assert sorted(info.name for _, info in iter_members(bad)) == ["k0000.jpg", "k0000.json"]  # never read as a sample
