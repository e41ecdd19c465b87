"""Config values given as text: number-like strings and ``key=value`` items.

One definition each, for the config loader, its overrides, the optimizer groups and the sweep grid:

* :func:`as_number`: YAML 1.1 (PyYAML) reads ``1e-5`` (no dot) as the *string* ``'1e-5'``; a string
  that reads as a number becomes that int or float.
* :func:`split_key_value` / :func:`parse_scalar` / :func:`parse_key_value`: ``'map.n_queries=16'`` →
  ``('map.n_queries', 16)``, the value parsed as YAML (``[q_proj,v_proj]`` is a list; unparsable text is
  kept as it is).

Errors are :class:`KeyValueError` (a ``ValueError``) naming the item; the config layer turns them into
its ``ConfigError``.
"""

from __future__ import annotations

import re
from typing import Any

import yaml

_INT = re.compile(r"[-+]?\d+")


class KeyValueError(ValueError):
    """An item that is not ``key=value``."""


def as_number(value: Any) -> Any:
    """``value``, or the int/float a number-like string stands for (``'1e-5'`` → 1e-05, ``'3'`` → 3)."""
    if not isinstance(value, str):
        return value
    text = value.strip()
    if _INT.fullmatch(text):
        return int(text)
    try:
        return float(text)
    except ValueError:
        return value


def split_key_value(item: str, form: str = "of the form key=value (e.g. train.lr=8e-4)") -> tuple[str, str]:
    """``'a.b=1e-3'`` → ``('a.b', '1e-3')``: the key stripped, the value as given (split at the first ``=``).

    :class:`KeyValueError` when there is no ``=`` (``"{item!r} is not {form}"``) or the key is empty."""
    if "=" not in item:
        raise KeyValueError(f"{item!r} is not {form}")
    key, raw = item.split("=", 1)
    key = key.strip()
    if not key:
        raise KeyValueError(f"{item!r} has an empty key")
    return key, raw


def parse_scalar(raw: str) -> Any:
    """A value given as text, parsed as YAML (``''`` for blank text; the text itself where YAML fails)."""
    if not raw.strip():
        return ""
    try:
        return yaml.safe_load(raw)
    except yaml.YAMLError:
        return raw


def parse_key_value(item: str) -> tuple[str, Any]:
    """``'map.n_queries=16'`` → ``('map.n_queries', 16)`` (see the module docstring)."""
    key, raw = split_key_value(item)
    return key, parse_scalar(raw)
