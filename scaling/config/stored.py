"""What a stored config may not grant: trust, or a command to run.

A config read back from a file someone else may have written (an adapter's safetensors metadata, a
checkpoint's config) is data, never permission. :func:`untrusted` removes from it every value that
would execute something when used:

* ``model.trust_remote_code`` is set to false: remote code runs only when the command line
  (``--trust-remote-code``, a ``model.trust_remote_code=true`` override) or the caller's argument
  (``load_adapter(..., trust_remote_code=True)``) asks for it, every time;
* ``pipe:`` data sources (``data.train/val/test/features/index``) are dropped: a ``pipe:`` URL is a
  shell command, which runs only when the user passes it (``--data 'pipe:...'``, ``data.test=pipe:...``).
  Every URL the loader would open is checked, as the loader reads the source: split on ``::``, ``#split``
  cut off, braces expanded, any case (``{pipe:cmd,a.tar}``, ``/data::pipe:cmd``, `` PIPE:cmd``);
* ``data.allow_pipe`` is set to false: the loader itself (:func:`scaling.data.shards.resolve_split`)
  opens a ``pipe:`` URL only when the user's own config or command line sets ``data.allow_pipe=true``
  (or passes a ``pipe:`` source as ``--data``).

Overrides applied afterwards (the user's own) may set any of these again.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from scaling.config.base import deep_merge

DATA_SOURCES = ("train", "val", "test", "features", "index")
EXECUTING_SCHEMES = ("pipe",)
# what urllib (and so webdataset's gopen) strips before reading a URL's scheme
_URL_SPACE = "".join(chr(c) for c in range(33))


def source_urls(source: str) -> list[str]:
    """Every URL a data source names, as the loader reads it: parts joined by ``::``, each without its
    ``#split`` and with its braces expanded (``{a,b}``, ``{000..003}``)."""
    import braceexpand

    urls = []
    for part in [p.strip() for p in str(source).split("::") if p.strip()]:
        ref = part.partition("#")[0]
        try:
            urls += list(braceexpand.braceexpand(ref))
        except Exception:  # noqa: BLE001 - an unbalanced pattern is checked as written
            urls.append(ref)
        urls.append(ref)  # the unexpanded form too: '{pipe:x,y}' never hides behind an expansion error
    return urls


def is_command_url(url: str) -> bool:
    """True for one URL that runs a shell command when opened (``pipe:``, in any case, after leading spaces)."""
    head = str(url).lstrip(_URL_SPACE).split(":", 1)
    return len(head) == 2 and head[0].lower() in EXECUTING_SCHEMES


def executes(value: Any) -> bool:
    """True for a data source any of whose URLs (:func:`source_urls`) runs a command when opened."""
    return isinstance(value, str) and any(is_command_url(u) for u in source_urls(value))


def untrusted(data: Mapping[str, Any], note: Callable[[str], None] | None = None) -> dict[str, Any]:
    """``data`` (a stored config) without anything that grants trust or runs a command; ``note(msg)`` per removal."""
    out = deep_merge({}, data)
    model = out.get("model")
    if isinstance(model, dict) and model.get("trust_remote_code"):
        model["trust_remote_code"] = False
        if note:
            note("the stored config sets model.trust_remote_code=true, which a stored config cannot grant: remote "
                 "code stays off (pass --trust-remote-code / trust_remote_code=True if you trust the backbones' code)")
    section = out.get("data")
    if isinstance(section, dict):
        if section.get("allow_pipe"):
            section["allow_pipe"] = False
            if note:
                note("the stored config sets data.allow_pipe=true, which a stored config cannot grant: pipe: sources "
                     "stay off (set data.allow_pipe=true yourself, or pass the pipe: source as --data)")
        for key in DATA_SOURCES:
            if executes(section.get(key)):
                if note:
                    note(f"ignored data.{key}={section[key]!r} from the stored config: a pipe: source runs a shell "
                         f"command, which only a value you pass yourself may do (e.g. --data or data.{key}=...)")
                section[key] = None
    return out


def upgrade(data: Mapping[str, Any]) -> dict[str, Any]:
    """A stored config of an earlier version made valid for this one (what it meant then, kept): configs written
    when ``train.epochs`` defaulted to 8 hold it beside ``train.max_steps``, which decided the length."""
    out = deep_merge({}, data)
    train = out.get("train")
    if isinstance(train, dict) and train.get("max_steps") is not None and train.get("epochs") is not None:
        train["epochs"] = None
    return out


def stored_pipe_source(data: Mapping[str, Any], split: str) -> str | None:
    """The stored ``data.<split>`` when it is a ``pipe:`` command (which :func:`untrusted` drops), else None."""
    section = data.get("data") if isinstance(data, Mapping) else None
    value = section.get(split) if isinstance(section, Mapping) else None
    return value if executes(value) else None
