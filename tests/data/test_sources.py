"""Data sources by URL scheme (scaling.data.sources): the synthetic toy:// task registers itself, and the
trainer, the evaluation hook, `scaling eval` and the start-up checks ask the registry, never a source by name."""

from __future__ import annotations

import os
import pathlib

import pytest

from scaling.config import load_config
from scaling.data import sources
from scaling.data.shards import check_source
from scaling.data.toy import tiny_run_overrides
from scaling.training.loaders import build

REPO = pathlib.Path(__file__).resolve().parents[2]


def test_toy_registers_itself_and_is_a_source_without_references():
    toy = sources.source_for("toy://colours?n=8")
    assert toy is not None and toy.scheme == "toy" and not toy.references
    assert not sources.has_references("toy://colours") and not sources.checks_paths("toy://colours")
    for shards in ("shards/coco/train-{000000..000003}.tar", "s3://bucket/x.tar", "/data/coco#val"):
        assert sources.source_for(shards) is None and sources.has_references(shards)
    assert not sources.has_references(None) and "toy://colours" in sources.hint()
    assert check_source("toy://colours?n=8", "train") == []  # not looked for on disk


def test_no_module_but_the_source_itself_names_its_scheme():
    named = [str(p.relative_to(REPO)) for p in (REPO / "scaling").rglob("*.py") if "toy://" in p.read_text()]
    assert named == [os.path.join("scaling", "data", "toy.py")]


class _Loader:
    def __init__(self, url, micro_batch, rank, world_size, epoch, train, tokenizer, split):
        self.args = (url, micro_batch, rank, world_size, epoch, train, tokenizer, split)

    def __iter__(self):
        return iter([])

    def __len__(self):
        return 0

    def state_dict(self):
        return {}

    def load_state_dict(self, state):
        pass


@pytest.fixture
def fake_source():
    source = sources.register(sources.Source("fake", _Loader, references=True, example="fake://x", about="a test source"))
    yield source
    del sources.SOURCES["fake"]


def test_a_registered_scheme_feeds_the_trainer_and_the_checks(fake_source, tmp_path):
    cfg = load_config(None, tiny_run_overrides(str(tmp_path), 1) + ["data.val=fake://x?n=4"])
    loader = build(cfg, None, "val", rank=1, world_size=2, train=False, epoch=3)
    assert isinstance(loader, _Loader) and loader.args == ("fake://x?n=4", 8, 1, 2, 3, False, None, "val")
    assert sources.has_references("fake://x") and check_source("fake://x", "val") == []
    assert "fake://x (a test source)" in sources.hint()
