"""Where the trainer's batches come from, behind one small protocol.

The trainer never looks inside the data pipeline. It needs an object that

* iterates over batch dicts (``input_ids``, ``attention_mask``, ``labels`` ``[B, T]`` and one of
  ``pixel_values`` / ``video`` / ``audio`` / ``features``),
* has ``len()`` = batches per epoch on this rank, the same on every rank (otherwise collectives
  hang), and
* has ``state_dict()`` / ``load_state_dict()`` for the exact position inside the epoch.

:func:`build` returns the loader of a registered source (:mod:`scaling.data.sources`) for its URLs and
:func:`build_loader` otherwise (shards): ``scaling.data.stream.build_loader`` given the model's encoder inputs
(``scaling.models.transforms.encoder_inputs``: the data package never asks the model package itself).
"""

from __future__ import annotations

import os

from scaling.config.base import ConfigError
from scaling.data import sources

PROTOCOL = ("__iter__", "__len__", "state_dict", "load_state_dict")


def tokenizer_remote_code(llm: str) -> str | None:
    """The ``auto_map`` entry with which a local LLM folder asks for its own tokenizer code, or None."""
    import json

    folder = os.path.expanduser(llm)
    for name in ("tokenizer_config.json", "config.json"):
        path = os.path.join(folder, name)
        try:
            with open(path) as fh:
                auto_map = (json.load(fh) or {}).get("auto_map") or {}
        except (OSError, ValueError, AttributeError):
            continue
        if isinstance(auto_map, dict) and auto_map.get("AutoTokenizer"):
            return f"{name}: auto_map.AutoTokenizer={auto_map['AutoTokenizer']!r}"
    return None


def remote_code_refused(llm: str, what: str) -> ConfigError:
    return ConfigError(
        f"the tokenizer of model.llm={llm!r} is custom Python code ({what}), which runs only when you allow it: "
        f"pass --trust-remote-code (or model.trust_remote_code=true on your own command line) if you trust that "
        f"folder's code; a checkpoint's stored config never allows it")


def load_tokenizer(llm: str, trust_remote_code: bool = False):
    """The LLM's tokenizer, or None for shape names (no vocabulary files). A tokenizer that needs the folder's own
    code (``auto_map``) is refused with the fix unless ``trust_remote_code`` (transformers never prompts)."""
    from scaling.models.shapes import LLM_SHAPES

    if llm in LLM_SHAPES:
        return None
    from transformers import AutoTokenizer

    remote = tokenizer_remote_code(llm)
    if remote and not trust_remote_code:
        raise remote_code_refused(llm, remote)
    try:
        return AutoTokenizer.from_pretrained(os.path.expanduser(llm), trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as err:
        if "trust_remote_code" in str(err):
            raise remote_code_refused(llm, "its config asks for its own code") from None
        raise ConfigError(f"cannot load the tokenizer of model.llm={llm!r}: {err}") from None


def generation_tokenizer(llm: str, what: str, trust_remote_code: bool = False):
    """The tokenizer that ``what`` (evaluation, prediction) needs to turn generated ids into text; a
    ConfigError naming the fix for shape names (random weights, no vocabulary) or an unloadable one."""
    tok = load_tokenizer(llm, trust_remote_code)
    if tok is None:
        raise ConfigError(
            f"model.llm={llm!r} is a shape name (random weights, no tokenizer): {what} needs a real LLM with its "
            f"tokenizer; pass --llm DIR (a local Hugging Face directory) or train with model.llm=DIR"
        )
    return tok


def split_url(cfg, split: str) -> str | None:
    return {"train": cfg.data.train, "val": cfg.data.val, "test": cfg.data.test}[split]


def build_loader(cfg, tokenizer, split: str, rank: int, world_size: int, train: bool, epoch: int = 0, *,
                 limit: int | None = None, num_workers: int | None = None):
    """:func:`scaling.data.stream.build_loader` given what the model's encoder needs (its preprocessing spec,
    the signature of the cached features it accepts: :func:`scaling.models.transforms.encoder_inputs`)."""
    from scaling.data.stream import build_loader as stream_loader
    from scaling.models.transforms import encoder_inputs, perceives

    encoder = encoder_inputs(cfg.model, cfg.data) if perceives(cfg.model) else None
    return stream_loader(cfg, tokenizer, split, rank, world_size, train, epoch, encoder=encoder, limit=limit,
                         num_workers=num_workers)


def build(cfg, tokenizer, split: str, rank: int, world_size: int, train: bool, epoch: int = 0):
    """A loader for ``split`` on this rank (see the module docstring)."""
    url = split_url(cfg, split)
    source = sources.source_for(url)
    if source is not None:
        loader = source.loader(url, cfg.train.micro_batch, rank, world_size, epoch, train, tokenizer, split)
    else:
        try:
            import scaling.data.stream  # noqa: F401 - the data pipeline's optional dependencies
        except ImportError as err:
            raise ConfigError(
                f"data.{split}={url!r} needs scaling.data.stream.build_loader, which cannot be imported ({err}); "
                f"use data.train={sources.hint()}"
            ) from None
        loader = build_loader(cfg, tokenizer, split, rank, world_size, train, epoch=epoch)
    missing = [m for m in PROTOCOL if not hasattr(loader, m)]
    if missing:
        raise TypeError(f"the {split} loader {type(loader).__name__} lacks {missing}: the trainer needs {PROTOCOL}")
    return loader
