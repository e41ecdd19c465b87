"""Every preset on the docs' running example (configs/demo_caption.yaml): its header lists the overrides each
preset needs on the tiny backbones; with them, each trains 2 steps; without them, every problem comes in one
error before any weight loads; a preset switch drops the file's method-specific options and says so."""

from __future__ import annotations

import dataclasses
import os

import pytest

from scaling.config import load_config
from scaling.config.base import ConfigError
from scaling.config.methods import METHODS
from scaling.demo.run import method_override_args

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CONFIG = os.path.join(REPO, "configs", "demo_caption.yaml")


def documented_overrides() -> dict[str, list[str]]:
    out = {}
    for line in open(CONFIG):
        if not line.startswith("#"):
            break
        text = line[1:].strip()
        name, _, rest = text.partition(":")
        if name in METHODS and not name.startswith("scaling"):
            out[name] = [] if rest.strip() == "(nothing more)" else rest.split()
    return out


def test_header_lists_the_overrides_of_every_preset():
    documented = documented_overrides()
    assert sorted(documented) == sorted(METHODS), "configs/demo_caption.yaml must list every preset of the registry"
    for method, args in documented.items():
        assert args == method_override_args(method), f"{method}: header {args} vs scaling demo {method_override_args(method)}"


@pytest.fixture(scope="module")
def example(tmp_path_factory):
    from scaling.demo.export import export_backbones
    from scaling.demo.run import QUICK

    root = tmp_path_factory.mktemp("example")
    tiny = dataclasses.replace(QUICK, n_train=24, n_test=4, questions_per_image=1, encoder_steps=1, encoder_pool=16,
                               lm_steps=1, lm_batch=4, workers=0)
    cwd = os.getcwd()
    os.chdir(root)
    try:
        export_backbones("demo", tiny, str(root / "cache"), progress=False, echo=lambda m: None)
    finally:
        os.chdir(cwd)
    return root


def _paths(root) -> list[str]:
    demo = os.path.join(root, "demo")
    return [f"model.llm={demo}/llm", f"model.encoder={demo}/vit", f"data.train={demo}/shards/caption",
            f"data.test={demo}/shards/caption"]


def test_a_preset_switch_without_its_overrides_reports_every_problem_before_loading(example):
    from scaling.training import validate

    notes = []
    cfg = load_config(CONFIG, ["model.method=epalm", *_paths(example)], warn=notes.append)
    assert notes and "dropped the config file's depalm-specific model.map" in notes[0]
    with pytest.raises(ConfigError) as err:
        validate.plan_run(cfg, 1, "cpu")
    text = str(err.value)
    assert "model.extract.n_levels=6 but the encoder has 3 layers" in text
    assert "n_llm_layers + n_left <= 2" in text, "both problems must come in one error"


def test_null_block_means_the_presets_own(example):
    cfg = load_config(CONFIG, ["model.map=null", *_paths(example)])
    assert cfg.model.map["d_embed"] == METHODS["depalm"]["map"]["d_embed"]


@pytest.mark.slow
@pytest.mark.parametrize("method", sorted(METHODS))
def test_every_preset_trains_two_steps_on_the_running_example(method, example, tmp_path):
    from scaling.training.loop import train

    overrides = [f"model.method={method}", *documented_overrides()[method], *_paths(example),
                 f"train.output_dir={tmp_path / 'run'}", "train.max_steps=2", "train.global_batch=4",
                 "train.micro_batch=4", "train.save_every=2", "train.log_every=1"]
    result = train(load_config(CONFIG, overrides, warn=lambda m: None))
    assert result.summary["steps"] == 2, f"{method}: {result.summary}"
    assert result.summary["final_loss"] is not None and result.summary["final_loss"] == result.summary["final_loss"]
