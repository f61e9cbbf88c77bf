"""Turning bytes into the encoder's input: decoding with clear errors, then a square RGB crop.

Every image the captioner sees (an emoji, a synthetic scene, a COCO photo, a user's upload) goes
through :func:`prepare`, so training and captioning see the same pixels.
"""

from __future__ import annotations

import io
import warnings
from typing import TYPE_CHECKING

import numpy as np

from course_tools.base import ToolInputError

if TYPE_CHECKING:
    from PIL.Image import Image

#: The encoder's input side (EfficientNet-Lite0 was trained at 224 x 224).
SIZE = 224
#: Larger images are refused before their pixels are decoded (a "decompression bomb").
MAX_PIXELS = 40_000_000
#: Smaller images carry too little to caption.
MIN_SIDE = 16


def decode_image(data: bytes, name: str = "the image") -> Image:
    """Decode image bytes fully, or raise :class:`ToolInputError` saying what is wrong."""
    from PIL import Image as PILImage
    from PIL import UnidentifiedImageError

    if not data:
        raise ToolInputError(f"{name} is empty: send a photo (JPEG or PNG).")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", PILImage.DecompressionBombWarning)
            image = PILImage.open(io.BytesIO(data))
            width, height = image.size
            if width * height > MAX_PIXELS:
                raise ToolInputError(
                    f"{name} is {width} x {height} pixels, too large to decode safely; "
                    f"send one under {MAX_PIXELS // 1_000_000} megapixels.")
            image.load()
    except ToolInputError:
        raise
    except UnidentifiedImageError:
        raise ToolInputError(f"{name} is not an image I can read: send a JPEG or PNG "
                             "photo.") from None
    except (PILImage.DecompressionBombError, PILImage.DecompressionBombWarning):
        raise ToolInputError(f"{name} claims to be enormous (a decompression bomb?); send "
                             "an ordinary photo.") from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise ToolInputError(f"{name} is damaged or truncated ({exc}); send it again or "
                             "send another photo.") from None
    if min(image.size) < MIN_SIDE:
        raise ToolInputError(f"{name} is only {image.size[0]} x {image.size[1]} pixels; send "
                             f"a photo at least {MIN_SIDE} pixels on each side.")
    return image


def to_rgb(image: Image) -> Image:
    """RGB, with any transparency composited onto white (emoji are drawn on nothing)."""
    from PIL import Image as PILImage

    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P"
                                              and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = PILImage.new("RGBA", rgba.size, (255, 255, 255, 255))
        return PILImage.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def prepare(image: Image) -> np.ndarray:
    """A ``SIZE x SIZE x 3`` uint8 array: shorter side resized to ``SIZE``, centre crop."""
    from PIL import Image as PILImage

    rgb = to_rgb(image)
    width, height = rgb.size
    scale = SIZE / min(width, height)
    new_size = (max(SIZE, round(width * scale)), max(SIZE, round(height * scale)))
    rgb = rgb.resize(new_size, PILImage.Resampling.BICUBIC)
    left, top = (new_size[0] - SIZE) // 2, (new_size[1] - SIZE) // 2
    return np.asarray(rgb.crop((left, top, left + SIZE, top + SIZE)), dtype=np.uint8)


def prepare_bytes(data: bytes, name: str = "the image") -> np.ndarray:
    """:func:`prepare` of decoded bytes (errors as :class:`ToolInputError`)."""
    return prepare(decode_image(data, name))
