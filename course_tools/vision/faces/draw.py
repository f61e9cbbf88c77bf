"""The photo with each face boxed, numbered and named, as PNG bytes."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from course_tools.vision.faces.engine import Box
from course_tools.vision.images import encode_png

KNOWN_COLOUR = (46, 204, 64)
UNKNOWN_COLOUR = (255, 133, 27)


@dataclass(frozen=True)
class Label:
    """What to draw for one face."""

    box: Box
    text: str
    known: bool


def annotate(rgb: np.ndarray, labels: Sequence[Label]) -> bytes:
    """PNG of ``rgb`` with a box and a caption per face (green: named, orange: unknown)."""
    from PIL import Image, ImageDraw, ImageFont

    image = Image.fromarray(rgb).convert("RGB")
    draw = ImageDraw.Draw(image)
    longer = max(image.size)
    width = max(2, round(longer / 320))
    font = ImageFont.load_default(size=max(11, round(longer / 55)))
    for label in labels:
        b, colour = label.box, KNOWN_COLOUR if label.known else UNKNOWN_COLOUR
        draw.rectangle((b.left, b.top, b.right - 1, b.bottom - 1), outline=colour, width=width)
        left, top, right, bottom = draw.textbbox((0, 0), label.text, font=font)
        text_w, text_h = right - left, bottom - top
        # Caption above the box, or inside its top edge when the box touches the photo's top.
        y = b.top - text_h - 2 * width if b.top - text_h - 2 * width >= 0 else b.top
        x = min(max(0, b.left), max(0, image.width - text_w - 2 * width))
        draw.rectangle((x, y, x + text_w + 2 * width, y + text_h + 2 * width), fill=colour)
        draw.text((x + width - left, y + width - top), label.text, fill=(0, 0, 0), font=font)
    return encode_png(np.asarray(image))
