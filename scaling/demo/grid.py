"""A PNG grid of test images with the captions each method generated for them (PIL only).

Each cell shows the image (upscaled, nearest neighbour) and under it one line per method (e.g.
``depalm: a big red circle ...``, ``blind: ...``) followed by one reference caption, wrapped to the
cell width. Words of a generated caption that appear in no reference are drawn in red.
"""

from __future__ import annotations

import os
import textwrap

from PIL import Image, ImageDraw, ImageFont

INK = (20, 20, 20)
WRONG = (200, 30, 30)
REF = (90, 90, 90)


def _font():
    for name in ("DejaVuSans.ttf", "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"):
        try:
            return ImageFont.truetype(name, 11)
        except OSError:
            continue
    return ImageFont.load_default()


def write_grid(path: str, images: list[str], captions: dict[str, list[str]], references: list[list[str]],
               cols: int = 4, scale: int = 3, chars: int = 30) -> str:
    """``images``: file paths; ``captions``: method → one caption per image; ``references``: per image."""
    font = _font()
    line_h = 13
    n = len(images)
    if n == 0:
        raise ValueError("no images for the grid")
    first = Image.open(images[0])
    side = first.width * scale
    cell_w = max(side, chars * 6 + 8)

    def lines_for(i: int) -> list[tuple[str, tuple[int, int, int]]]:
        out = []
        refs = references[i] if i < len(references) else []
        ref_words = {w for r in refs for w in r.lower().split()}
        for method, caps in captions.items():
            text = f"{method}: {caps[i]}"
            wrong = any(w not in ref_words for w in caps[i].lower().split())
            for k, chunk in enumerate(textwrap.wrap(text, chars) or [text]):
                out.append((chunk, WRONG if wrong else INK))
        if refs:
            for chunk in textwrap.wrap(f"ref: {refs[0]}", chars):
                out.append((chunk, REF))
        return out

    all_lines = [lines_for(i) for i in range(n)]
    text_h = max(len(ls) for ls in all_lines) * line_h + 6
    cell_h = side + text_h
    rows = (n + cols - 1) // cols
    grid = Image.new("RGB", (cols * cell_w + (cols + 1) * 6, rows * cell_h + (rows + 1) * 6), (255, 255, 255))
    draw = ImageDraw.Draw(grid)
    for i, img_path in enumerate(images):
        r, c = divmod(i, cols)
        x, y = 6 + c * (cell_w + 6), 6 + r * (cell_h + 6)
        img = Image.open(img_path).convert("RGB").resize((side, side), Image.NEAREST)
        grid.paste(img, (x + (cell_w - side) // 2, y))
        ty = y + side + 3
        for text, color in all_lines[i]:
            draw.text((x, ty), text, fill=color, font=font)
            ty += line_h
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    grid.save(path)
    return path
