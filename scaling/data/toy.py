"""A learnable synthetic task for CPU runs and tests: name the colour of a 32×32 image.

``data.train: toy://colours?n=512`` selects it (this module registers the ``toy`` scheme with
:mod:`scaling.data.sources`; no other module names it). Each sample is a noisy image of one of six colours;
the prompt is "a picture of" and the target is the colour word then EOS, so the loss can only fall
below the prior by reading the image. With a tokenizer (a tiny LLM directory from
:func:`scaling.models.tiny.save_tiny_llm`) the words are tokenized; with a shape-name LLM (no
tokenizer) fixed token ids stand for them.

:class:`ToyLoader` implements the loader protocol the trainer expects from
``scaling.data.stream.build_loader``: iterating yields batch dicts (``input_ids``,
``attention_mask``, ``labels`` ``[B, T]``, ``pixel_values`` ``[B, 3, S, S]``); ``len()`` is the
number of batches per epoch on this rank (equal on every rank); ``state_dict()`` /
``load_state_dict()`` give the exact position inside the epoch.

URL options: ``n`` samples (512), ``image_size`` (32), ``seed`` (0), ``nan_batches`` (comma list
of per-rank batch indices whose images are NaN, on rank ``nan_rank``; to test step skipping).
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Iterator
from typing import Any

import torch

from scaling.data.sources import Source, register

COLOURS = {
    "red": (1.0, 0.1, 0.1), "green": (0.1, 0.9, 0.1), "blue": (0.1, 0.1, 1.0),
    "yellow": (1.0, 1.0, 0.1), "purple": (0.6, 0.1, 0.7), "white": (1.0, 1.0, 1.0),
}
PROMPT = "a picture of"
# token ids used when there is no tokenizer (shape-name LLMs have vocabularies of >= 256)
FIXED = {"bos": 1, "eos": 2, "pad": 0, "prompt": [20, 21, 22], "colours": [10, 11, 12, 13, 14, 15]}


def parse(url: str) -> dict[str, Any]:
    parsed = urllib.parse.urlparse(url)
    if parsed.netloc not in ("colours", "colors"):
        raise ValueError(f"unknown toy task {parsed.netloc!r} in {url!r}; available: toy://colours")
    q = dict(urllib.parse.parse_qsl(parsed.query))
    return {
        "n": int(q.get("n", 512)),
        "image_size": int(q.get("image_size", 32)),
        "seed": int(q.get("seed", 0)),
        "nan_batches": [int(x) for x in q.get("nan_batches", "").split(",") if x.strip()],
        "nan_rank": int(q.get("nan_rank", 0)),
    }


def encode_texts(tokenizer) -> tuple[list[int], list[list[int]], int, int]:
    """(prompt ids, target ids per colour (word + EOS), pad id, eos id)."""
    if tokenizer is None:
        eos = FIXED["eos"]
        return [FIXED["bos"], *FIXED["prompt"]], [[c, eos] for c in FIXED["colours"]], FIXED["pad"], eos
    prompt = tokenizer(PROMPT)["input_ids"]
    eos = tokenizer.eos_token_id
    targets = [tokenizer(word, add_special_tokens=False)["input_ids"] + [eos] for word in COLOURS]
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos
    return list(prompt), targets, pad, eos


def make_samples(n: int, seed: int, image_size: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    """(images ``[n, 3, S, S]`` in [-1, 1], colour indices ``[n]``), deterministic in ``seed``."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, len(COLOURS), (n,), generator=g)
    base = torch.tensor(list(COLOURS.values()))[labels]  # [n, 3]
    images = base[:, :, None, None] + 0.15 * torch.randn(n, 3, image_size, image_size, generator=g)
    return (images.clamp(0, 1) - 0.5) / 0.5, labels


class ToyLoader:
    """Batches of the colour task for one rank and one epoch (see the module docstring)."""

    def __init__(
        self, url: str, micro_batch: int, rank: int = 0, world_size: int = 1, epoch: int = 0,
        train: bool = True, tokenizer=None, split: str = "train",
    ):
        opts = parse(url)
        self.opts, self.micro_batch, self.rank, self.world_size = opts, micro_batch, rank, world_size
        self.epoch, self.train = epoch, train
        seed = opts["seed"] + (0 if split == "train" else 1000)
        self.images, self.colours = make_samples(opts["n"], seed, opts["image_size"])
        self.prompt, self.targets, self.pad, self.eos = encode_texts(tokenizer)
        per_rank = opts["n"] // world_size
        order = torch.arange(opts["n"])
        if train:  # a new shuffle every epoch, the same on every rank; then a disjoint slice per rank
            order = torch.randperm(opts["n"], generator=torch.Generator().manual_seed(seed * 7919 + epoch))
        self.indices = order[rank * per_rank : (rank + 1) * per_rank]
        self.position = 0  # batches already yielded in this epoch

    def __len__(self) -> int:
        return len(self.indices) // self.micro_batch

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "position": self.position}

    def load_state_dict(self, state: dict[str, int]) -> None:
        if int(state["epoch"]) != self.epoch:
            raise ValueError(f"loader state of epoch {state['epoch']} given to the loader of epoch {self.epoch}")
        self.position = int(state["position"])

    def batch(self, i: int) -> dict[str, torch.Tensor]:
        idx = self.indices[i * self.micro_batch : (i + 1) * self.micro_batch]
        seqs = [self.prompt + self.targets[int(c)] for c in self.colours[idx]]
        width = max(len(s) for s in seqs)
        input_ids = torch.full((len(seqs), width), self.pad, dtype=torch.long)
        mask = torch.zeros_like(input_ids)
        labels = torch.full_like(input_ids, -100)
        for row, seq in enumerate(seqs):
            input_ids[row, : len(seq)] = torch.tensor(seq)
            mask[row, : len(seq)] = 1
            labels[row, len(self.prompt) : len(seq)] = torch.tensor(seq[len(self.prompt) :])
        pixels = self.images[idx].clone()
        if self.train and i in self.opts["nan_batches"] and self.rank == self.opts["nan_rank"]:
            pixels.fill_(float("nan"))
        return {"input_ids": input_ids, "attention_mask": mask, "labels": labels, "pixel_values": pixels}

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        while self.position < len(self):
            batch = self.batch(self.position)
            self.position += 1
            yield batch


def tiny_run_overrides(output_dir: str, steps: int = 6, **train: Any) -> list[str]:
    """``key=value`` overrides for a fast CPU run on the colour task (tests, smoke runs).

    Tiny random LLaMA + tiny ViT (shape names), DePALM blocks at toy width, fp32, no progress bar.
    Keyword arguments are extra ``train.*`` values (``global_batch=16``, ``deepspeed=...``).
    """
    base = {
        "output_dir": output_dir, "max_steps": steps, "lr": 3e-3, "global_batch": 16, "micro_batch": 8,
        "precision": "fp32", "save_every": 1000, "log_every": 1, "progress_bar": False, "tensorboard": False,
        "log_samples": 0,
    }
    base.update(train)
    out = [
        "model.method=depalm", "model.llm=tiny-llama", "model.encoder=tiny-vit", "model.frozen_dtype=fp32",
        "model.map.d_embed=32", "model.map.n_queries=4", "data.task=caption", "data.train=toy://colours?n=256",
        "data.val=toy://colours?n=32", "eval.max_new_tokens=3",
    ]
    out += [f"train.{k}={'null' if v is None else v}" for k, v in base.items()]
    return out


register(Source("toy", ToyLoader, references=False, example="toy://colours",
                about="the synthetic CPU task: name the colour of a 32x32 image"))
