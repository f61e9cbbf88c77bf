"""Safe decoding of the photos users send: bounded pixels, bounded work, clear messages.

Every vision tool decodes ``ctx.inputs`` through :func:`decode_image`. It reads the header first
and refuses what it cannot use (not an image, a decompression bomb, a 1x1 pixel) before any
pixel is decoded, decodes big JPEGs at a reduced scale, applies the EXIF orientation, and
downscales so that the longer side is at most ``max_side``: the work after it is bounded
whatever was sent. Every failure is a :class:`~course_tools.base.ToolInputError` whose message
says what to send instead.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from course_tools.base import ToolInputError

if TYPE_CHECKING:
    from PIL import Image as PILImage

#: Refuse images with more pixels than this (a 40 MP photo is already more than any phone's).
MAX_PIXELS = 40_000_000
#: Refuse files larger than this before looking inside.
MAX_BYTES = 50 * 1024 * 1024
#: Refuse images whose shorter side is below this.
MIN_SIDE = 16
#: Container formats Pillow may open (PPM covers ORL's PGM files).
FORMATS = ("JPEG", "PNG", "WEBP", "BMP", "GIF", "PPM", "TIFF")


@dataclass(frozen=True)
class DecodedImage:
    """An RGB photo ready for a model, and how it relates to the file that was sent."""

    pixels: np.ndarray  # (height, width, 3) uint8, C-contiguous
    original_size: tuple[int, int]  # (width, height) in the file
    format: str

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) of ``pixels``."""
        return int(self.pixels.shape[1]), int(self.pixels.shape[0])

    @property
    def downscaled(self) -> bool:
        return self.size != self.original_size


def _describe(name: str) -> str:
    return f"'{name}'" if name else "the file"


def decode_image(data: bytes, *, name: str = "", max_side: int = 1024,
                 max_pixels: int = MAX_PIXELS, min_side: int = MIN_SIDE) -> DecodedImage:
    """Decode image bytes into an RGB array whose longer side is at most ``max_side``.

    Raises :class:`ToolInputError` for empty, oversized, truncated, corrupt, tiny or non-image
    data; nothing else escapes.
    """
    from PIL import Image, ImageOps, UnidentifiedImageError

    what = _describe(name)
    if not data:
        raise ToolInputError(f"{what} is empty; send a JPEG or PNG photo.")
    if len(data) > MAX_BYTES:
        raise ToolInputError(f"{what} is {len(data) / 2**20:.0f} MB; send a photo under "
                             f"{MAX_BYTES // 2**20} MB.")
    try:
        with warnings.catch_warnings():
            # Our own pixel cap below is stricter than Pillow's bomb warning.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data), formats=FORMATS)
            width, height = image.size
            file_format = str(image.format or "image")
            if width * height > max_pixels:
                raise ToolInputError(
                    f"{what} is {width}x{height} pixels ({width * height / 1e6:.0f} MP); "
                    f"send a photo of at most {max_pixels / 1e6:.0f} MP.")
            if min(width, height) < min_side:
                raise ToolInputError(
                    f"{what} is only {width}x{height} pixels; send a photo at least "
                    f"{min_side} pixels on each side.")
            if file_format in ("JPEG", "MPO"):
                # Decode at 1/2, 1/4 or 1/8 scale when the photo is much bigger than needed.
                image.draft("RGB", _target(width, height, max_side))
            image.load()
            rgb = _to_rgb(ImageOps.exif_transpose(image))
    except ToolInputError:
        raise
    except Image.DecompressionBombError:
        raise ToolInputError(f"{what} decodes to too many pixels; send a photo of at most "
                             f"{max_pixels / 1e6:.0f} MP.") from None
    except UnidentifiedImageError:
        raise ToolInputError(f"{what} is not an image I can read; send a JPEG, PNG or WebP "
                             "photo.") from None
    except (OSError, ValueError, SyntaxError, EOFError, MemoryError) as exc:
        raise ToolInputError(f"{what} is damaged or truncated ({exc}); send the photo "
                             "again.") from None
    if max(rgb.size) > max_side:
        rgb.thumbnail((max_side, max_side), Image.Resampling.LANCZOS, reducing_gap=2.0)
    pixels = np.ascontiguousarray(np.asarray(rgb, dtype=np.uint8))
    return DecodedImage(pixels=pixels, original_size=(width, height), format=file_format)


def _target(width: int, height: int, max_side: int) -> tuple[int, int]:
    scale = min(1.0, max_side / max(width, height))
    return max(1, round(width * scale)), max(1, round(height * scale))


def _to_rgb(image: PILImage.Image) -> PILImage.Image:
    """RGB whatever the mode: alpha over white, 16-bit and float greyscale rescaled to 8 bits."""
    from PIL import Image

    if image.mode in ("I", "I;16", "I;16B", "I;16L", "F"):
        array = np.asarray(image, dtype=np.float64)
        low, high = float(array.min()), float(array.max())
        scaled = (array - low) / (high - low) * 255.0 if high > low else array * 0.0
        image = Image.fromarray(scaled.astype(np.uint8), mode="L")
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, rgba)
    return image.convert("RGB")


def encode_png(pixels: np.ndarray) -> bytes:
    """PNG bytes of an RGB (or greyscale) uint8 array."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.asarray(pixels, dtype=np.uint8)).save(buffer, format="PNG", optimize=False)
    return buffer.getvalue()


def encode_jpeg(pixels: np.ndarray, quality: int = 90) -> bytes:
    """JPEG bytes of an RGB uint8 array (test photos and benchmarks)."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.asarray(pixels, dtype=np.uint8)).save(buffer, format="JPEG",
                                                            quality=quality)
    return buffer.getvalue()
