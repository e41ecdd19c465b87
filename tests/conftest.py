"""Shared fixtures: fixed seeds, quiet transformers, tiny real-architecture backbones on disk."""

from __future__ import annotations

import os
import random
import shutil

import numpy as np
import pytest
import torch

# Triton kernels run under the CPU interpreter when there is no GPU; this must be set before
# triton is first imported (transformers/torch._dynamo import it), hence here, at the very start.
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import transformers  # noqa: E402

transformers.utils.logging.disable_progress_bar()
transformers.utils.logging.set_verbosity_error()

from scaling.models.tiny import TINY_ENCODER_ARCHS as ENCODER_ARCHS  # noqa: E402
from scaling.models.tiny import TINY_LLM_ARCHS as LLM_ARCHS  # noqa: E402


@pytest.fixture(autouse=True)
def _seed():
    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)
    yield


@pytest.fixture(scope="session")
def backbones(tmp_path_factory) -> dict[str, str]:
    """{'llama': dir, 'opt': dir, ..., 'vit': dir, ...}: tiny random models saved with save_pretrained."""
    from scaling.models.tiny import save_tiny_encoder, save_tiny_llm

    root = tmp_path_factory.mktemp("backbones")
    dirs = {}
    for arch in LLM_ARCHS:
        dirs[arch] = save_tiny_llm(str(root / arch), arch)
    for arch in ENCODER_ARCHS:
        dirs[arch] = save_tiny_encoder(str(root / arch), arch)
    return dirs


# ---- a real browser (issue 28): Debian's Chromium driven by Playwright, never a downloaded browser

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]


def chromium_or_skip():
    """The system Chromium driven by Playwright (never a downloaded browser), or a skip saying what is missing."""
    if not os.path.isfile(CHROMIUM) and not shutil.which("chromium"):
        pytest.skip(f"no system Chromium at {CHROMIUM} (Debian/Ubuntu: apt-get install chromium)")
    pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install playwright)")
    return CHROMIUM if os.path.isfile(CHROMIUM) else shutil.which("chromium")


@pytest.fixture(scope="module")
def browser():
    """A headless Chromium per test module (background networking, component updates and sync off); closed after
    the module, since Playwright's sync API keeps an event loop running in the main thread while it is open."""
    executable = chromium_or_skip()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=executable, headless=True, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture(scope="session")
def artifacts_dir() -> str:
    """Screenshots of the browser tests: test-artifacts/ at the repository root (git-ignored)."""
    path = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "test-artifacts")
    os.makedirs(path, exist_ok=True)
    return path


def _write_caption_shards(d: str, n: int, split: str = "train", unanswered=(), per_shard: int = 5) -> str:
    """``n`` image-caption samples (36-px shapes, one reference each, none for the ids in ``unanswered``) as
    webdataset shards of ``split`` with their index in ``d``; returns ``d``."""
    import io
    import random

    from scaling.data.shards import ShardSetWriter, sample_record, update_index
    from scaling.data.synthetic import make_image

    rng = random.Random(0)
    writer = ShardSetWriter(os.path.join(d, f"{split}-%06d.tar"), d, samples_per_shard=per_shard)
    for i in range(n):
        img, color, shape = make_image(rng, 36)
        buf = io.BytesIO()
        img.save(buf, format="JPEG")
        answers = [] if i in unanswered else [f"a {color} {shape}"]
        writer.write(f"k{i:04d}", sample_record(f"id{i}", "caption", "x", split, answers), {"jpg": buf.getvalue()})
    entries = writer.close()
    update_index(d, split, {"task": "caption", "modality": "image", "num_samples": n,
                            "shards": [e.__dict__ for e in entries]}, writer.samples)
    return d


@pytest.fixture
def caption_shards():
    """The writer of small caption shards with chosen unanswered samples (:func:`_write_caption_shards`)."""
    return _write_caption_shards
