"""One source per enumeration (issue 23, item 4): tasks (scaling/config/tasks.py), methods (presets),
datasets (the converters of scaling/data/annotations.py) are listed once; the CLI's choices and help,
configs/generate.py, the docs and the metrics all agree with that list."""

from __future__ import annotations

import argparse
import importlib.util
import os
import re

import pytest

from scaling.cli.main import build_parser
from scaling.config import ConfigError, load_config
from scaling.config.methods import METHODS
from scaling.config.tasks import TASK_NAMES, TASKS
from scaling.data.annotations import PARSERS
from scaling.data.text import template_for
from scaling.evaluation.metrics import PRIMARY_METRIC, check_task

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _subparser(parser: argparse.ArgumentParser, *names: str) -> argparse.ArgumentParser:
    for name in names:
        action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        parser = action.choices[name]
    return parser


def _option(parser: argparse.ArgumentParser, flag: str) -> argparse.Action:
    return next(a for a in parser._actions if flag in a.option_strings)


def _read(*parts: str) -> str:
    with open(os.path.join(REPO, *parts), encoding="utf-8") as fh:
        return fh.read()


def test_the_task_registry_is_the_one_of_the_config_the_metrics_and_the_prompts():
    assert TASK_NAMES == ("caption", "vqa", "gqa", "videoqa")  # the papers' tasks
    for task in TASK_NAMES:
        assert load_config(None, [f"data.task={task}"]).data.task == task
        assert check_task(task) == task and PRIMARY_METRIC[task] == TASKS[task].metric
        assert template_for(task) == TASKS[task].template
    assert set(PRIMARY_METRIC) == set(TASK_NAMES)
    with pytest.raises(ConfigError, match=r"'vqa2' is not one of \['caption', 'vqa', 'gqa', 'videoqa'\].*'vqa'"):
        load_config(None, ["data.task=vqa2"])


@pytest.mark.parametrize("command", [("eval",), ("score",), ("data", "convert")])
def test_every_task_option_offers_the_registry(command):
    action = _option(_subparser(build_parser(), *command), "--task")
    assert tuple(action.choices) == TASK_NAMES


def test_data_convert_names_every_converter():
    convert = _subparser(build_parser(), "data", "convert")
    help_text = convert.format_help()
    for name in PARSERS:
        assert name in help_text
    positional = next(a for a in convert._actions if a.dest == "dataset")
    assert positional.help.split(" | ") == list(PARSERS)


def test_the_docs_list_the_registries():
    data_md = _read("docs", "data.md")
    rows = re.findall(r"^\| `([a-z0-9-]+)` \|", data_md.split("| dataset | files (as downloaded)")[1].split("\n\n")[0], re.M)
    assert rows == list(PARSERS), "docs/data.md's dataset table must list the converters of scaling/data/annotations.py"
    assert '"task": ' + "\\|".join(TASK_NAMES) in data_md
    # docs/training.md names the methods of the shipped configs: configs/generate.py's, all of them presets
    spec = importlib.util.spec_from_file_location("configs_generate", os.path.join(REPO, "configs", "generate.py"))
    gen = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gen)
    training_md = " ".join(_read("docs", "training.md").split())
    listed = re.search(r"× (\d+) methods \(([^)]*)\)", training_md)
    assert listed and int(listed.group(1)) == len(gen.METHODS)
    assert listed.group(2).split(", ") == list(gen.METHODS) and set(gen.METHODS) <= set(METHODS)


def test_the_encoder_registry_is_the_one_of_the_docs_and_the_cli():
    from scaling.models.encoders.registry import MODEL_TYPES, PREFIXES

    backbones_md = _read("docs", "backbones.md")
    table = backbones_md.split("| module | reads |")[1].split("\n\n")[0]
    reads = re.findall(r"`([a-z0-9_-]+):?`", " ".join(row.split("|")[2] for row in table.strip().splitlines()[1:]))
    assert sorted(reads) == sorted([*MODEL_TYPES, *PREFIXES]), "docs/backbones.md's module table must list registry.py"
    help_text = _option(_subparser(build_parser(), "methods"), "--encoder").help
    assert all(f"{prefix}:NAME" in help_text for prefix in PREFIXES)
