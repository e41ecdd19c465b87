"""`scaling methods`: every preset with its trainable-parameter count; --show; --json."""

import json

from scaling.cli.main import main
from scaling.config.methods import METHODS


def test_methods_json_lists_every_preset_with_counts(capsys):
    assert main(["methods", "--llm", "llama-7b", "--encoder", "clip-vit-l14", "--json"]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    rows = {r["method"]: r["trainable_parameters"] for r in out["methods"]}
    assert set(rows) == set(METHODS)
    assert rows["depalm"] == 17_888_256  # the official code: no RMSNorm on the output tokens
    assert rows["depalm-r-linear"] > rows["depalm"] > rows["limber-all"]


def test_methods_show_prints_resolved_config(capsys):
    assert main(["methods", "--show", "depalm", "--llm", "opt-6.7b", "--encoder", "vit-b16", "map.n_queries=8"]) == 0
    text = capsys.readouterr().out
    assert "n_queries: 8" in text and "name: qpmapper" in text and "opt-6.7b" in text


def test_methods_unknown_name_is_an_error(capsys):
    assert main(["methods", "--show", "depalmm"]) == 2
    assert "did you mean 'depalm'" in capsys.readouterr().err


def test_a_first_listing_says_it_counts_and_a_cached_one_is_quiet(capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.delenv("SCALING_NO_PARAM_CACHE", raising=False)
    argv = ["methods", "--llm", "qwen2-0.5b", "--encoder", "vit-b16", "--json"]
    assert main(argv) == 0
    err = capsys.readouterr().err
    assert f"counting {len(METHODS)} presets" in err and "cached afterwards" in err
    assert main(argv) == 0
    assert "counting" not in capsys.readouterr().err, "a cached backbone pair is listed without the counting notice"
