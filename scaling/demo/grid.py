"""A PNG grid that tells the demo's story alone: test images, each method's caption side by side (PIL only).

Layout: a title line and a one-line score summary at the top; a legend under them; then one cell per test
image: the image (upscaled, nearest neighbour), and beside it one column per method (e.g. DePALM | blind),
each caption marked against the references: ``✓`` when every word of it appears in some reference caption of
that image, ``✗`` otherwise, with the words that appear in no reference drawn in red. The first reference is
printed under the columns in grey.
"""

from __future__ import annotations

import os
import textwrap

from PIL import Image, ImageDraw, ImageFont

INK = (20, 20, 20)
WRONG = (200, 30, 30)
RIGHT = (20, 130, 40)
REF = (110, 110, 110)
METHOD_COLORS = [(30, 90, 200), (200, 120, 20), (120, 60, 160), (20, 140, 140)]
PAD = 6
LINE_H = 14


def _font(size: int = 11):
    for name in ("DejaVuSans.ttf", "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"):
        try:
            return ImageFont.truetype(name, size)
        except OSError:
            continue
    return ImageFont.load_default()


def caption_is_right(caption: str, references: list[str]) -> bool:
    """True when the caption is non-empty and each of its words appears in at least one reference."""
    ref_words = {w for r in references for w in r.lower().split()}
    words = caption.lower().split()
    return bool(words) and all(w in ref_words for w in words)


def _column_lines(method: str, caption: str, references: list[str], chars: int) -> list[list[tuple[str, tuple]]]:
    """Wrapped lines of one method's caption; each line is a list of (text, colour) runs."""
    ref_words = {w for r in references for w in r.lower().split()}
    mark = "✓" if caption_is_right(caption, references) else "✗"
    lines: list[list[tuple[str, tuple]]] = [[(f"{mark} {method}", RIGHT if mark == "✓" else WRONG)]]
    for chunk in textwrap.wrap(caption, chars) or ["(empty)"]:
        lines.append([(w + " ", INK if w.lower() in ref_words else WRONG) for w in chunk.split()])
    return lines


def write_grid(path: str, images: list[str], captions: dict[str, list[str]], references: list[list[str]],
               cols: int = 2, scale: int = 2, chars: int = 24, title: str = "Test images: generated captions",
               summary: str | None = None) -> str:
    """``images``: file paths; ``captions``: method → one caption per image; ``references``: per image.

    ``summary``: one line of scores printed under the title (e.g. ``caption CIDEr: DePALM 3.8, blind 1.2``).
    """
    n = len(images)
    if n == 0:
        raise ValueError("no images for the grid")
    font, bold = _font(11), _font(13)
    methods = list(captions)
    first = Image.open(images[0])
    side = first.width * scale
    col_w = chars * 7 + PAD
    cell_w = side + PAD + len(methods) * col_w

    per_cell = []
    for i in range(n):
        refs = references[i] if i < len(references) else []
        columns = [_column_lines(m, captions[m][i], refs, chars) for m in methods]
        ref_lines = textwrap.wrap(f"reference: {refs[0]}", (cell_w - side) // 7) if refs else []
        per_cell.append((columns, ref_lines))
    text_rows = max(max(len(c) for c in cols_) + len(refs_) for cols_, refs_ in per_cell)
    cell_h = max(side, text_rows * LINE_H + PAD)
    rows = (n + cols - 1) // cols

    right = {m: sum(caption_is_right(captions[m][i], references[i] if i < len(references) else []) for i in range(n))
             for m in methods}
    distinct = {m: len(set(captions[m])) for m in methods}
    legend = ("✓ every word of the caption appears in a reference   ✗ some word (red) appears in none   "
              "grey: the first reference")
    counts = "   ".join(f"{m}: {right[m]}/{n} ✓, {distinct[m]} distinct captions" for m in methods)
    header = [(title, bold, INK)]
    if summary:
        header.append((summary, font, INK))
    header += [(counts, font, INK), (legend, font, REF)]
    header_h = PAD + len(header) * (LINE_H + 2) + PAD

    width = cols * cell_w + (cols + 1) * PAD * 2
    grid = Image.new("RGB", (width, header_h + rows * (cell_h + 2 * PAD) + PAD), (255, 255, 255))
    draw = ImageDraw.Draw(grid)
    y = PAD
    for text, f, colour in header:
        draw.text((PAD * 2, y), text, fill=colour, font=f)
        y += LINE_H + 2
    for i, img_path in enumerate(images):
        r, c = divmod(i, cols)
        x0 = PAD * 2 + c * (cell_w + PAD * 2)
        y0 = header_h + r * (cell_h + 2 * PAD)
        draw.rectangle([x0 - 3, y0 - 3, x0 + cell_w + 3, y0 + cell_h + 3], outline=(220, 220, 220))
        grid.paste(Image.open(img_path).convert("RGB").resize((side, side), Image.NEAREST), (x0, y0))
        columns, ref_lines = per_cell[i]
        for k, lines in enumerate(columns):
            cx = x0 + side + PAD + k * col_w
            ty = y0
            for j, runs in enumerate(lines):
                tx = cx
                for text, colour in runs:
                    if j == 0:  # the method's name in its colour, the mark in green/red
                        mark, name = text.split(" ", 1)
                        draw.text((tx, ty), mark + " ", fill=colour, font=font)
                        tx += draw.textlength(mark + " ", font=font)
                        draw.text((tx, ty), name, fill=METHOD_COLORS[k % len(METHOD_COLORS)], font=font)
                        break
                    draw.text((tx, ty), text, fill=colour, font=font)
                    tx += draw.textlength(text, font=font)
                ty += LINE_H
        ty = y0 + max(len(col) for col in columns) * LINE_H + 2
        for line in ref_lines:
            draw.text((x0 + side + PAD, ty), line, fill=REF, font=font)
            ty += LINE_H
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    grid.save(path)
    return path
