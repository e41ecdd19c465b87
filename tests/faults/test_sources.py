"""Fault campaign round three, security (issue 24 item 1): no stored value runs a command, however it is written."""

import json
import os

import pytest

from scaling.config import load_config, to_dict
from scaling.config.base import ConfigError
from scaling.config.stored import executes, untrusted
from scaling.data.shards import resolve_split


def _disguises(marker):
    touch = f"touch {marker}"
    return {
        "braces": f"{{pipe:{touch} && cat /dev/null,/data/train-000000.tar}}",
        "double colon": f"/data/shards::pipe:{touch}",
        "split suffix": f"pipe:{touch}#train",
        "capitals": f"PIPE:{touch}",
        "leading space": f"  pipe:{touch}",
        "numeric range": f"pipe:{touch}{{0..1}}",
    }


@pytest.mark.parametrize("form", list(_disguises("X")))
def test_a_stored_pipe_source_is_dropped_in_every_form(tmp_path, form):
    value = _disguises(tmp_path / "ran")[form]
    assert executes(value)
    stored = to_dict(load_config(None, []))
    stored["data"]["test"] = value
    stored["data"]["train"] = value
    stored["data"]["allow_pipe"] = True
    notes = []
    clean = untrusted(stored, notes.append)
    assert clean["data"]["test"] is None and clean["data"]["train"] is None
    assert clean["data"]["allow_pipe"] is False
    assert any("data.allow_pipe" in n for n in notes) and any("data.test" in n for n in notes)


@pytest.mark.parametrize("form", list(_disguises("X")))
def test_the_loader_refuses_pipe_sources_the_user_did_not_enable(tmp_path, form):
    marker = tmp_path / "ran"
    value = _disguises(marker)[form]
    with pytest.raises(ConfigError, match="data.allow_pipe=true") as err:
        resolve_split(value, "test", what="data.test")
    assert "shell command" in str(err.value)
    with pytest.raises(ConfigError, match="pipe:"):  # an index that is a command is refused the same way
        resolve_split("/data/train-000000.tar", "train", index=value)
    assert not marker.exists()


def test_capital_pipe_is_refused_with_a_message_even_when_enabled(tmp_path):
    with pytest.raises(ConfigError, match="lower case"):
        resolve_split(f"PIPE:touch {tmp_path / 'ran'}", "train", allow_pipe=True)
    assert not (tmp_path / "ran").exists()


def test_check_reports_a_pipe_source_that_is_not_enabled(tmp_path):
    from scaling.training.validate import check_data

    cfg = load_config(None, [f"data.train=/data/x::pipe:touch {tmp_path / 'ran'}", "data.val=toy://colours?n=8"])
    assert any("data.allow_pipe=true" in p for p in check_data(cfg))
    cfg = load_config(None, [f"data.train=pipe:cat {tmp_path}/t.tar", "data.allow_pipe=true"])
    assert not any("allow_pipe" in p for p in check_data(cfg))
    assert not (tmp_path / "ran").exists()


def test_a_tokenizer_with_its_own_code_is_refused_with_our_message_and_no_prompt(tmp_path, capfd):
    from scaling.models.tiny import save_tiny_llm
    from scaling.training.loaders import load_tokenizer

    llm = save_tiny_llm(str(tmp_path / "llm"), "llama")
    marker = tmp_path / "tokenizer_code_ran"
    (tmp_path / "llm" / "evil.py").write_text(
        f"open({str(marker)!r}, 'w').write('x')\nfrom transformers import PreTrainedTokenizerFast\n"
        "class EvilTok(PreTrainedTokenizerFast):\n    pass\n")
    path = tmp_path / "llm" / "tokenizer_config.json"
    config = json.loads(path.read_text())
    config.update(auto_map={"AutoTokenizer": ["evil.EvilTok", None]}, tokenizer_class="EvilTok")
    path.write_text(json.dumps(config))
    capfd.readouterr()
    with pytest.raises(ConfigError, match="--trust-remote-code") as err:
        load_tokenizer(llm)
    assert "auto_map.AutoTokenizer" in str(err.value)
    out = capfd.readouterr()
    assert "[y/N]" not in out.out + out.err
    assert not marker.exists()
    assert os.path.isdir(llm)
