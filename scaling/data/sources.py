"""Data sources by URL scheme: a split (``data.train``/``val``/``test``) whose URL starts with a registered
``SCHEME://`` is read by that source instead of the shard pipeline (:mod:`scaling.data.stream`).

A source registers itself (:func:`register`) when its module is imported; :data:`BUILTIN` lists the
modules imported on first use. Everything else asks this module and never names a source:
:func:`source_for` (the trainer's loader), :func:`has_references` (whether a split's generations can be
scored: the evaluation hook, ``scaling eval``, the train summary), :func:`checks_paths` (start-up checks of
local shard files) and :func:`hint` (error messages that suggest a source).

A source's ``loader(url, micro_batch, rank, world_size, epoch, train, tokenizer, split)`` returns an
object with the loader protocol of :mod:`scaling.training.loaders` (iteration, ``len()``, ``state_dict()``).
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Callable
from typing import Any

#: modules of the sources that ship with the project (each calls :func:`register` on import)
BUILTIN = ("scaling.data.toy",)


@dataclasses.dataclass(frozen=True)
class Source:
    scheme: str  # the URL scheme, without '://'
    loader: Callable[..., Any]  # (url, micro_batch, rank, world_size, epoch, train, tokenizer, split) -> loader
    references: bool  # whether samples carry reference texts that generations can be scored against
    example: str  # a URL for help texts and error messages
    about: str  # what it is, for messages ("the synthetic CPU task ...")


SOURCES: dict[str, Source] = {}
_loaded = False


def register(source: Source) -> Source:
    """Add ``source`` (a module calls this on import)."""
    SOURCES[source.scheme] = source
    return source


def _load_builtin() -> None:
    global _loaded
    if not _loaded:
        _loaded = True
        for module in BUILTIN:
            importlib.import_module(module)


def source_for(url: Any) -> Source | None:
    """The registered source of ``url``'s scheme, or None (shards: local files, pipe:, http(s), s3, gs)."""
    text = str(url) if url else ""
    if "://" not in text:
        return None
    _load_builtin()
    return SOURCES.get(text.split("://", 1)[0])


def has_references(url: Any) -> bool:
    """Whether ``url`` is set and its samples can be scored (shards have references; a synthetic source may not)."""
    if not url:
        return False
    source = source_for(url)
    return source is None or source.references


def checks_paths(url: Any) -> bool:
    """Whether ``url`` names shard files that start-up checks look for (False for a registered source)."""
    return source_for(url) is None


def hint() -> str:
    """The registered sources as ``'EXAMPLE (ABOUT) or ...'``, for messages that suggest one."""
    _load_builtin()
    return " or ".join(f"{s.example} ({s.about})" for s in SOURCES.values())
