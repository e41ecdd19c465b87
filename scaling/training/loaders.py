"""Where the trainer's batches come from, behind one small protocol.

The trainer never looks inside the data pipeline. It needs an object that

* iterates over batch dicts (``input_ids``, ``attention_mask``, ``labels`` ``[B, T]`` and one of
  ``pixel_values`` / ``video`` / ``audio`` / ``features``),
* has ``len()`` = batches per epoch on this rank, the same on every rank (otherwise collectives
  hang), and
* has ``state_dict()`` / ``load_state_dict()`` for the exact position inside the epoch.

:func:`build` returns :class:`scaling.training.toy.ToyLoader` for ``toy://`` URLs and
``scaling.data.stream.build_loader(cfg, tokenizer, split, rank, world_size, train, epoch)``
otherwise.
"""

from __future__ import annotations

import os

from scaling.config.base import ConfigError
from scaling.training import toy

PROTOCOL = ("__iter__", "__len__", "state_dict", "load_state_dict")


def load_tokenizer(llm: str):
    """The LLM's tokenizer, or None for shape names (no vocabulary files)."""
    from scaling.models.shapes import LLM_SHAPES

    if llm in LLM_SHAPES:
        return None
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(os.path.expanduser(llm))
    except (OSError, ValueError) as err:
        raise ConfigError(f"cannot load the tokenizer of model.llm={llm!r}: {err}") from None


def generation_tokenizer(llm: str, what: str):
    """The tokenizer that ``what`` (evaluation, prediction) needs to turn generated ids into text; a
    ConfigError naming the fix for shape names (random weights, no vocabulary) or an unloadable one."""
    tok = load_tokenizer(llm)
    if tok is None:
        raise ConfigError(
            f"model.llm={llm!r} is a shape name (random weights, no tokenizer): {what} needs a real LLM with its "
            f"tokenizer; pass --llm DIR (a local Hugging Face directory) or train with model.llm=DIR"
        )
    return tok


def split_url(cfg, split: str) -> str | None:
    return {"train": cfg.data.train, "val": cfg.data.val, "test": cfg.data.test}[split]


def build(cfg, tokenizer, split: str, rank: int, world_size: int, train: bool, epoch: int = 0):
    """A loader for ``split`` on this rank (see the module docstring)."""
    url = split_url(cfg, split)
    if toy.is_toy(url):
        loader = toy.ToyLoader(url, cfg.train.micro_batch, rank, world_size, epoch, train, tokenizer, split)
    else:
        try:
            from scaling.data.stream import build_loader
        except ImportError as err:
            raise ConfigError(
                f"data.{split}={url!r} needs scaling.data.stream.build_loader, which cannot be imported ({err}); "
                f"use data.train=toy://colours for the synthetic CPU task"
            ) from None
        loader = build_loader(cfg, tokenizer, split, rank, world_size, train, epoch=epoch)
    missing = [m for m in PROTOCOL if not hasattr(loader, m)]
    if missing:
        raise TypeError(f"the {split} loader {type(loader).__name__} lacks {missing}: the trainer needs {PROTOCOL}")
    return loader
