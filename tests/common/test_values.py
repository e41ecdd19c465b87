"""scaling.common.values: number-like strings and key=value items, as the config, its overrides,
the optimizer groups and the sweep grid read them."""

import pytest

from scaling.common.values import KeyValueError, as_number, parse_key_value, parse_scalar, split_key_value
from scaling.config import ConfigError, load_config
from scaling.config.base import parse_override
from scaling.evaluation.sweep import parse_grid, parse_value


@pytest.mark.parametrize("text,value", [("1e-5", 1e-5), ("8E-4", 8e-4), ("+2e3", 2000.0), (" 3 ", 3), ("-7", -7),
                                        (".5", 0.5)])
def test_number_like_strings_become_numbers(text, value):
    out = as_number(text)
    assert out == value and type(out) is type(value)


@pytest.mark.parametrize("value", ["q_proj", "", "1e-5x", None, True, [1], 0.1])
def test_anything_else_is_left_alone(value):
    assert as_number(value) is value or as_number(value) == value


def test_yaml_1e_minus_5_reaches_the_config_as_a_number(tmp_path):
    # PyYAML (YAML 1.1) reads 1e-5 without a dot as a string: a float field and an optimizer group take it as a number
    path = tmp_path / "c.yaml"
    path.write_text("train:\n  lr: 1e-5\n  param_groups:\n    mapper: {lr: 2e-5}\n")
    cfg = load_config(str(path))
    assert cfg.train.lr == 1e-5 and cfg.train.param_groups["mapper"]["lr"] == 2e-5
    assert load_config(None, ["train.lr=3e-4"]).train.lr == 3e-4
    assert parse_value("train.lr", "1e-3") == 1e-3 and parse_value("train.micro_batch", "'4'") == 4


def test_key_value_items():
    assert split_key_value("a.b = x=y") == ("a.b", " x=y")
    assert parse_key_value("model.lora_targets=[q_proj,v_proj]") == ("model.lora_targets", ["q_proj", "v_proj"])
    assert parse_key_value("data.name=") == ("data.name", "")
    assert parse_scalar("{unclosed") == "{unclosed"
    with pytest.raises(KeyValueError, match="is not of the form key=value"):
        split_key_value("train.lr")
    with pytest.raises(KeyValueError, match="empty key"):
        split_key_value(" =1")


def test_the_config_and_the_sweep_name_the_item_in_their_errors():
    with pytest.raises(ConfigError, match=r"override 'train\.lr' is not of the form key=value \(e\.g\. train\.lr=8e-4\)"):
        parse_override("train.lr")
    with pytest.raises(ConfigError, match="override '=3' has an empty key"):
        parse_override("=3")
    with pytest.raises(ConfigError, match=r"--grid 'train\.lr' is not KEY=V1,V2,\.\.\."):
        parse_grid(["train.lr"])
    with pytest.raises(ConfigError, match="--grid ' =1,2' has an empty key"):
        parse_grid([" =1,2"])
    assert parse_grid(["train.lr=1e-3,8e-4"]) == [("train.lr", ["1e-3", "8e-4"])]
