"""The demo's caption grid: methods side by side, each caption marked against the references, a legend."""

import numpy as np
from PIL import Image

from scaling.demo.grid import caption_is_right, write_grid


def _images(tmp_path, n):
    paths = []
    for i in range(n):
        p = tmp_path / f"{i}.png"
        Image.new("RGB", (32, 32), (0, 0, 40 * i)).save(p)
        paths.append(str(p))
    return paths


def test_caption_is_right_against_the_references():
    refs = ["a big red circle", "a red ball"]
    assert caption_is_right("a red circle", refs)
    assert not caption_is_right("a blue circle", refs)
    assert not caption_is_right("", refs), "an empty caption is never right"


def _red_pixels(path):
    a = np.asarray(Image.open(path).convert("RGB")).astype(int)
    return int(((a[..., 0] > 150) & (a[..., 1] < 80) & (a[..., 2] < 80)).sum())


def test_grid_puts_methods_side_by_side_and_marks_wrong_words(tmp_path):
    imgs = _images(tmp_path, 4)
    refs = [["a red circle"]] * 4
    one = write_grid(str(tmp_path / "one.png"), imgs, {"depalm": ["a red circle"] * 4}, refs)
    two = write_grid(str(tmp_path / "two.png"), imgs, {"depalm": ["a red circle"] * 4, "blind": ["a red circle"] * 4}, refs)
    assert Image.open(two).width > Image.open(one).width, "a second method must get its own column"
    wrong = write_grid(str(tmp_path / "wrong.png"), imgs,
                       {"depalm": ["a red circle"] * 4, "blind": ["a green square"] * 4}, refs, summary="CIDEr 3.8 vs 1.2")
    assert _red_pixels(two) == 0, "all captions right: no red mark or word"
    assert _red_pixels(wrong) > 100, "the wrong captions' ✗ marks and words must be drawn in red"
