"""Real image files made in memory, in the formats and shapes phones send."""

from __future__ import annotations

import io
import struct
import zlib

from PIL import Image


def picture(
    size: tuple[int, int] = (64, 48),
    color: tuple[int, ...] | int = (200, 30, 30),
    *,
    mode: str = "RGB",
    fmt: str = "PNG",
    orientation: int | None = None,
) -> bytes:
    image = Image.new(mode, size, color)
    out = io.BytesIO()
    if orientation is None:
        image.save(out, format=fmt)
    else:
        exif = Image.Exif()
        exif[0x0112] = orientation
        image.save(out, format=fmt, exif=exif)
    return out.getvalue()


def two_colour_picture(size: tuple[int, int] = (60, 40), fmt: str = "JPEG") -> bytes:
    """Left half red, right half blue: shows which way a picture was turned."""
    image = Image.new("RGB", size, (255, 0, 0))
    image.paste((0, 0, 255), (size[0] // 2, 0, size[0], size[1]))
    out = io.BytesIO()
    image.save(out, format=fmt)
    return out.getvalue()


def animated_gif(frames: list[tuple[int, int, int]], size: tuple[int, int] = (16, 16)) -> bytes:
    images = [Image.new("RGB", size, colour) for colour in frames]
    out = io.BytesIO()
    images[0].save(out, format="GIF", save_all=True, append_images=images[1:], duration=100)
    return out.getvalue()


def png_bomb(width: int = 30_000, height: int = 30_000) -> bytes:
    """A few hundred bytes that declare a huge greyscale picture: a decompression bomb."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    rows = zlib.compress(b"\x00" * (width + 1) * 8)  # a few rows; the rest is "missing"
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", rows) + chunk(b"IEND", b"")
    )
