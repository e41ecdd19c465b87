"""Adapters remember where their backbones were: relative paths as given, plus absolute resolved ones."""

import pytest
import torch

from scaling.config.base import ConfigError
from scaling.training import checkpoint as ckpt


def _adapter(tmp_path, monkeypatch):
    work = tmp_path / "work"
    (work / "demo" / "llm").mkdir(parents=True)
    (work / "demo" / "vit").mkdir(parents=True)
    monkeypatch.chdir(work)
    config = {"model": {"method": "depalm", "llm": "./demo/llm", "encoder": "./demo/vit"}}
    path = str(tmp_path / "a.safetensors")
    ckpt.save_adapter(path, {"w": torch.zeros(1)}, config, {}, step=3)
    return path, work


def test_adapter_stores_absolute_paths_beside_the_given_ones(tmp_path, monkeypatch):
    path, work = _adapter(tmp_path, monkeypatch)
    meta = ckpt.read_adapter_meta(path)
    assert meta["config"]["model"]["llm"] == "./demo/llm", "the path as given is kept"
    assert meta["backbones_resolved"] == {"llm": str(work / "demo" / "llm"), "encoder": str(work / "demo" / "vit")}


def test_loading_from_another_folder_uses_the_stored_absolute_paths(tmp_path, monkeypatch):
    path, work = _adapter(tmp_path, monkeypatch)
    monkeypatch.chdir(tmp_path)
    meta = ckpt.read_adapter_meta(path)
    config = meta["config"]
    notes = []
    assert ckpt.relocate_backbones(config, meta, {}, notes.append) == []
    assert config["model"]["llm"] == str(work / "demo" / "llm")
    assert len(notes) == 2 and "where it was at training time" in notes[0]


def test_a_backbone_found_nowhere_names_the_flag_that_fixes_it(tmp_path, monkeypatch):
    path, work = _adapter(tmp_path, monkeypatch)
    monkeypatch.chdir(tmp_path)
    (work / "demo" / "llm").rmdir()
    with pytest.raises(ConfigError, match=r"model\.llm '\./demo/llm' does not exist.*--llm PATH"):
        ckpt.load_adapter(path)
    meta = ckpt.read_adapter_meta(path)
    # an explicit --llm always wins, and then nothing is reported for the LLM
    assert ckpt.relocate_backbones(meta["config"], meta, {"llm": "/elsewhere/llm"}, lambda m: None) == []


def test_library_encoder_values_keep_their_loader_prefix(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "w.bin").write_bytes(b"x")
    assert ckpt.absolute_backbone("timm:eva02_large@w.bin") == f"timm:eva02_large@{tmp_path / 'w.bin'}"
    assert ckpt.absolute_backbone("mavil:w.bin") == f"mavil:{tmp_path / 'w.bin'}"
    assert ckpt.absolute_backbone("llama-tiny") is None, "a shape name or hub id is not a local path"
