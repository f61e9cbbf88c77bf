"""Safe photo decoding: real formats decode, and every kind of bad file gets a clear message."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from course_tools.base import ToolInputError
from course_tools.vision.faces.evaluate import orl_dir
from course_tools.vision.images import MAX_PIXELS, decode_image, encode_jpeg, encode_png


def png_header_only(width: int, height: int) -> bytes:
    """A PNG that claims ``width`` x ``height`` 1-bit pixels and holds almost no data."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b""))


def test_orl_pgm_decodes_to_rgb() -> None:
    data = (orl_dir() / "s1" / "1.pgm").read_bytes()
    image = decode_image(data, name="1.pgm")
    assert image.pixels.shape == (112, 92, 3) and image.pixels.dtype == np.uint8
    assert image.format == "PPM" and not image.downscaled


def test_big_photo_is_decoded_small() -> None:
    rng = np.random.default_rng(0)
    # Smooth content keeps the JPEG quick to make; what matters is the 4800x3600 header.
    small = rng.integers(0, 255, size=(36, 48, 3), dtype=np.uint8)
    big = np.asarray(Image.fromarray(small).resize((4800, 3600), Image.Resampling.BILINEAR))
    image = decode_image(encode_jpeg(big, quality=95), name="big.jpg", max_side=1024)
    assert image.original_size == (4800, 3600)
    assert max(image.size) == 1024 and image.downscaled
    assert image.pixels.shape == (768, 1024, 3)


def test_exif_orientation_is_applied() -> None:
    buffer = io.BytesIO()
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    Image.new("RGB", (40, 20), (200, 10, 10)).save(buffer, format="JPEG", exif=exif)
    assert decode_image(buffer.getvalue()).pixels.shape == (40, 20, 3)


def test_transparent_and_16_bit_images_become_rgb() -> None:
    rgba = np.zeros((32, 32, 4), dtype=np.uint8)
    rgba[..., 3] = 0  # fully transparent: composited over white
    assert decode_image(encode_png(rgba)).pixels.min() == 255
    buffer = io.BytesIO()
    Image.fromarray(np.arange(32 * 32, dtype=np.uint16).reshape(32, 32) * 60).save(
        buffer, format="PNG")
    pixels = decode_image(buffer.getvalue()).pixels
    assert pixels.shape == (32, 32, 3) and pixels.max() == 255 and pixels.min() == 0


@pytest.mark.parametrize(("data", "expected"), [
    (b"", "empty"),
    (b"this is not a photo at all, just text named photo.jpg", "not an image"),
    (png_header_only(1, 1), "only 1x1 pixels"),
    (png_header_only(8_000, 8_000), f"at most {MAX_PIXELS / 1e6:.0f} MP"),  # under Pillow's cap
    (png_header_only(50_000, 50_000), "at most"),  # Pillow's own bomb error, reworded
])
def test_bad_files_get_clear_messages(data: bytes, expected: str) -> None:
    with pytest.raises(ToolInputError, match=expected):
        decode_image(data, name="photo.jpg")


def test_truncated_jpeg_is_refused() -> None:
    rng = np.random.default_rng(1)
    data = encode_jpeg(rng.integers(0, 255, size=(200, 300, 3), dtype=np.uint8))
    with pytest.raises(ToolInputError, match="damaged or truncated"):
        decode_image(data[: len(data) // 2], name="cut.jpg")
