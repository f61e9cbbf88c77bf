"""Turning bytes into the encoder's input: the shared safe decoding, then a square RGB crop.

Every image the captioner sees (an emoji, a synthetic scene, a COCO photo, a user's upload) goes
through :func:`prepare`, so training and captioning see the same pixels.
"""

from __future__ import annotations

import numpy as np

from course_tools.vision.images import decode_image

#: The encoder's input side (EfficientNet-Lite0 was trained at 224 x 224).
SIZE = 224
def prepare(pixels: np.ndarray) -> np.ndarray:
    """A ``SIZE x SIZE x 3`` uint8 array of RGB ``pixels``: shorter side resized to ``SIZE``,
    centre crop."""
    from PIL import Image as PILImage

    rgb = PILImage.fromarray(pixels)
    width, height = rgb.size
    scale = SIZE / min(width, height)
    new_size = (max(SIZE, round(width * scale)), max(SIZE, round(height * scale)))
    rgb = rgb.resize(new_size, PILImage.Resampling.BICUBIC)
    left, top = (new_size[0] - SIZE) // 2, (new_size[1] - SIZE) // 2
    return np.asarray(rgb.crop((left, top, left + SIZE, top + SIZE)), dtype=np.uint8)


def prepare_bytes(data: bytes, name: str = "the image") -> np.ndarray:
    """:func:`prepare` of image bytes, decoded safely by the vision tools' one decoder
    (:func:`course_tools.vision.images.decode_image`: errors as ``ToolInputError``)."""
    return prepare(decode_image(data, name=name, max_side=4 * SIZE).pixels)
