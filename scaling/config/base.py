"""Typed config sections built from plain dicts, YAML files and ``key=value`` overrides.

Every config section is a dataclass. :func:`from_dict` builds one from a (possibly nested) dict and
reports *all* unknown keys and bad types in one :class:`ConfigError`, each with a suggestion.
:func:`apply_overrides` applies command-line ``a.b.c=value`` strings (values parsed as YAML, so
``lr=1e-3``, ``frozen_dtype=fp16``, ``map.n_queries=16`` and ``lora_targets=[q_proj,v_proj]`` work).
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from collections.abc import Mapping
from typing import Any

import yaml

from scaling.common.values import KeyValueError, as_number, parse_scalar, split_key_value


class ConfigError(ValueError):
    """A configuration problem. The message lists every problem found and how to fix it."""

    def __init__(self, problems: list[str] | str):
        if isinstance(problems, str):
            problems = [problems]
        self.problems = list(problems)
        if len(self.problems) == 1:
            super().__init__(self.problems[0])
        else:
            super().__init__(
                f"{len(self.problems)} configuration problems:\n" + "\n".join(f"  - {p}" for p in self.problems)
            )


def suggest(name: str, valid: typing.Iterable[str], cutoff: float = 0.6) -> str:
    """' (did you mean X?)' when a close match exists, else ''."""
    close = difflib.get_close_matches(name, list(valid), n=1, cutoff=cutoff)
    return f" (did you mean '{close[0]}'?)" if close else ""


def literal_choices(cls: type, name: str) -> tuple:
    """The values a ``Literal`` field of the config dataclass ``cls`` allows (for CLI ``choices``)."""
    tp = typing.get_type_hints(cls)[name]
    if typing.get_origin(tp) is not typing.Literal:
        raise TypeError(f"{cls.__name__}.{name} is not a Literal field")
    return typing.get_args(tp)


def _is_dataclass_type(tp: Any) -> bool:
    return isinstance(tp, type) and dataclasses.is_dataclass(tp)


def _coerce(value: Any, tp: Any, path: str, problems: list[str]) -> Any:
    """Convert ``value`` to the annotated type ``tp`` where that is unambiguous."""
    origin = typing.get_origin(tp)
    if tp is Any or tp is object:
        return value
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        for arg in args:
            if arg is type(None):
                continue
            sub: list[str] = []
            out = _coerce(value, arg, path, sub)
            if not sub:
                return out
        problems.append(f"{path}: {value!r} is not a valid {tp}")
        return value
    if _is_dataclass_type(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, Mapping):
            problems.append(f"{path}: expected a mapping for section {tp.__name__}, got {value!r}")
            return value
        return _from_dict(tp, value, path, problems)
    if origin is typing.Literal:
        allowed = typing.get_args(tp)
        if value not in allowed:
            problems.append(f"{path}: {value!r} is not one of {list(allowed)}{suggest(str(value), map(str, allowed))}")
        return value
    if origin in (list, tuple):
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, (list, tuple)):
            problems.append(f"{path}: expected a list, got {value!r}")
            return value
        (arg,) = typing.get_args(tp)[:1] or (Any,)
        out = [_coerce(v, arg, f"{path}[{i}]", problems) for i, v in enumerate(value)]
        return out if origin is list else tuple(out)
    if origin is dict:
        if not isinstance(value, Mapping):
            problems.append(f"{path}: expected a mapping, got {value!r}")
        return dict(value) if isinstance(value, Mapping) else value
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "yes", "no", "1", "0"):
            return value.lower() in ("true", "yes", "1")
        problems.append(f"{path}: expected true/false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            try:
                return int(value)
            except ValueError:
                pass
        problems.append(f"{path}: expected an integer, got {value!r}")
        return value
    if tp is float:
        number = as_number(value)  # YAML reads 1e-5 (no dot) as a string
        if isinstance(number, (int, float)) and not isinstance(number, bool):
            return float(number)
        problems.append(f"{path}: expected a number, got {value!r}")
        return value
    if tp is str:
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
        problems.append(f"{path}: expected a string, got {value!r}")
        return value
    return value


# Keys that configs of earlier versions may hold and that no longer exist: dropped, with a note, from
# the config stored in a checkpoint or adapter (so that older adapters still load); an error elsewhere.
REMOVED_KEYS = {"eval.answer_list": "it was never read (no closed-vocabulary answers)"}


def drop_removed_keys(data: Mapping[str, Any], note=None) -> dict[str, Any]:
    """``data`` (a stored config) without the :data:`REMOVED_KEYS`; ``note(msg)`` for each one dropped."""
    out = deep_merge({}, data)
    for key, why in REMOVED_KEYS.items():
        *parents, leaf = key.split(".")
        node = out
        for p in parents:
            node = node.get(p) if isinstance(node, Mapping) else None
        if isinstance(node, dict) and leaf in node:
            del node[leaf]
            if note:
                note(f"ignored {key} from the stored config: removed in this version ({why})")
    return out


def _from_dict(cls: type, data: Mapping[str, Any], path: str, problems: list[str]):
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs = {}
    bad_value = False
    for key, value in data.items():
        if key not in fields:
            where = f"{path}.{key}" if path else key
            problems.append(
                f"unknown key '{where}'{suggest(key, fields)}; valid keys of {path or 'the config'}: {sorted(fields)}"
            )
            continue
        before = len(problems)
        kwargs[key] = _coerce(value, hints[key], f"{path}.{key}" if path else key, problems)
        # a nested section that failed is None: this section's checks would only trip over it too
        bad_value |= len(problems) > before and (not dataclasses.is_dataclass(hints[key]) or kwargs[key] is None)
    if bad_value:  # the section's own checks would only trip over the unconverted value (TypeErrors)
        return None
    try:
        obj = cls(**kwargs)
    except ConfigError as err:  # raised by a section's __post_init__ validation
        problems.extend(err.problems)
        return None
    except TypeError as err:
        problems.append(f"{path or cls.__name__}: {err}")
        return None
    return obj


def from_dict(cls: type, data: Mapping[str, Any] | None):
    """Build the dataclass ``cls`` from ``data``; raises one ConfigError listing every problem."""
    problems: list[str] = []
    obj = _from_dict(cls, data or {}, "", problems)
    if problems:
        raise ConfigError(problems)
    return obj


def to_dict(obj: Any) -> Any:
    """Dataclass (nested) → plain dict, suitable for YAML/JSON."""
    if dataclasses.is_dataclass(obj):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_dict(v) for k, v in obj.items()}
    return obj


def deep_merge(base: Mapping[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    """Recursive dict merge: values of ``update`` win; nested mappings are merged."""
    out = dict(base)
    for key, value in update.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def parse_override(item: str) -> tuple[list[str], Any]:
    """``'a.b=16'`` → (['a', 'b'], 16). Values are parsed as YAML scalars/lists (:mod:`scaling.common.values`)."""
    try:
        key, raw = split_key_value(item)
    except KeyValueError as err:
        raise ConfigError(f"override {err}") from None
    return key.split("."), parse_scalar(raw)


def apply_overrides(data: Mapping[str, Any], overrides: typing.Iterable[str]) -> dict[str, Any]:
    """Apply ``key.path=value`` overrides to a nested dict (creating sections as needed); a key given
    again replaces the earlier value.

    Except for shard files: a key given twice with different ``.tar`` files is what a shell makes of an
    unquoted shard pattern (``train-{000000..000031}.tar``, ``*.tar``): one argument per file, of which
    only the last would be kept. That is an error that says how to pass the pattern."""
    out = deep_merge({}, data)
    seen: dict[str, str] = {}
    for item in overrides:
        keys, value = parse_override(item)
        key, raw = ".".join(keys), item.split("=", 1)[1].strip()
        if key in seen and seen[key] != raw and seen[key].endswith(".tar") and raw.endswith(".tar"):
            raise ConfigError(
                f"{key} is given twice ({seen[key]!r}, then {raw!r}): a shell probably expanded a shard pattern into "
                f"one argument per shard. Quote the override (\"{key}=.../train-{{000000..000031}}.tar\"), or put "
                f"the pattern in the YAML config (a remote launcher such as deepspeed's pdsh re-parses arguments)"
            )
        seen[key] = raw
        node = out
        for k in keys[:-1]:
            if not isinstance(node.get(k), dict):
                node[k] = {} if node.get(k) is None else dict(node[k]) if isinstance(node.get(k), Mapping) else {}
            node = node[k]
        node[keys[-1]] = value
    return out


def load_yaml(path: str) -> dict[str, Any]:
    """Read a YAML config file; errors name the file."""
    try:
        with open(path) as fh:
            data = yaml.safe_load(fh)
    except FileNotFoundError:
        raise ConfigError(f"config file {path!r} does not exist") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"config file {path!r} is not valid YAML: {err}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path!r} must hold a mapping at the top level, got {type(data).__name__}")
    return data
