"""Small PNG bar charts drawn with PIL (matplotlib is deliberately not a dependency).

:func:`bar_chart` draws one horizontal bar per row (label on the left, bar length = value, a whisker
of ± err when given, the value printed after the bar) under a title, and saves it as PNG.
"""

from __future__ import annotations

from collections.abc import Sequence

from PIL import Image, ImageDraw, ImageFont

_PALETTE = ((66, 133, 244), (219, 68, 55), (244, 180, 0), (15, 157, 88), (171, 71, 188), (0, 172, 193))


def _font(size: int):
    try:
        return ImageFont.load_default(size=size)  # a scalable font with Pillow >= 10.1 and FreeType
    except TypeError:  # older Pillow: fixed bitmap font
        return ImageFont.load_default()


def _text_width(draw: ImageDraw.ImageDraw, text: str, font) -> int:
    left, _, right, _ = draw.textbbox((0, 0), text, font=font)
    return int(right - left)


def bar_chart(
    title: str,
    rows: Sequence[tuple[str, float, float | None]],
    path: str,
    value_format: str = "{:.2f}",
    highlight: int | None = 0,
    width: int = 900,
) -> str:
    """Save a horizontal bar chart of ``rows`` = [(label, value, err or None), ...] to ``path``."""
    if not rows:
        raise ValueError("bar_chart needs at least one row")
    font, title_font = _font(14), _font(16)
    bar_h, gap, top, bottom, pad = 22, 10, 44, 28, 12
    height = top + len(rows) * (bar_h + gap) + bottom
    img = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(img)
    draw.text((pad, 12), title, fill="black", font=title_font)

    texts = [value_format.format(v) + (f" ± {value_format.format(e)}" if e is not None else "") for _, v, e in rows]
    label_w = max(_text_width(draw, label, font) for label, _, _ in rows) + 2 * pad
    text_w = max(_text_width(draw, t, font) for t in texts) + 2 * pad
    x0 = label_w
    span = max(width - x0 - text_w - pad, 50)
    vmax = max(max(v + (e or 0.0), 0.0) for _, v, e in rows) or 1.0
    vmin = min(min(v - (e or 0.0), 0.0) for _, v, e in rows)
    scale = span / (vmax - vmin)
    zero = x0 + (-vmin) * scale

    draw.line([(zero, top - 4), (zero, height - bottom + 4)], fill=(120, 120, 120))
    for k, ((label, value, err), text) in enumerate(zip(rows, texts)):
        y = top + k * (bar_h + gap)
        color = _PALETTE[0] if highlight is None or k != highlight else _PALETTE[3]
        x_val = zero + value * scale
        draw.rectangle([min(zero, x_val), y, max(zero, x_val), y + bar_h], fill=color)
        draw.text((pad, y + 3), label, fill="black", font=font)
        right = x_val
        if err:
            lo, hi = zero + (value - err) * scale, zero + (value + err) * scale
            mid = y + bar_h // 2
            draw.line([(lo, mid), (hi, mid)], fill="black", width=2)
            draw.line([(lo, y + 4), (lo, y + bar_h - 4)], fill="black", width=2)
            draw.line([(hi, y + 4), (hi, y + bar_h - 4)], fill="black", width=2)
            right = max(right, hi)
        draw.text((right + 6, y + 3), text, fill="black", font=font)
    img.save(path, format="PNG")
    return path
