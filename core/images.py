"""Stage 1: turn untrusted bytes into an RGB picture the caption model can read.

Photos come from strangers' phones, so the checks run before any pixel is decoded:
the header alone tells us the size and the shape, and a decompression bomb or a sliver
of a picture is refused on it. The model sees `side` × `side` pixels (384 for BLIP), so
a picture is decoded at reduced size where the format allows (JPEG), and shrunk to a
shorter side of `side` before anything else (orientation, colour conversion) copies it:
whatever was sent, what is kept is at most `side` × `MAX_ASPECT_RATIO * side` pixels.
"""

from __future__ import annotations

import io
import warnings

from PIL import Image, UnidentifiedImageError

from core.errors import BadImageError

# 50 megapixels: more than any phone photo, far less than a bomb's claimed size.
MAX_PIXELS = 50_000_000
# Telegram itself refuses a photo whose sides differ by more than 20 times (sendPhoto);
# phone panoramas stay under 10:1. A longer sliver only costs memory and says nothing.
MAX_ASPECT_RATIO = 20
# A file larger than Telegram lets a bot download (20 MB) is refused from the CLI too.
MAX_FILE_BYTES = 20 * 1024 * 1024
MODEL_SIDE = 384  # BLIP's input; the pipeline passes its captioner's own
_WHITE = (255, 255, 255)


def load_image(data: bytes, *, max_pixels: int = MAX_PIXELS, side: int = MODEL_SIDE) -> Image.Image:
    """Decode the first frame, upright (EXIF orientation), in RGB, shorter side at most `side`."""
    if not data:
        raise BadImageError("The file is empty.")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            _check_shape(*image.size, max_pixels)
            image.seek(0)
            image.draft("RGB", (side, side))  # JPEG: decode at 1/2, 1/4 or 1/8 of the size
            image.load()
            orientation = image.getexif().get(_ORIENTATION)
            image = _shrink(image, side)
            if orientation in _TURNS:
                image = image.transpose(_TURNS[orientation])
            return _to_rgb(image)
    except BadImageError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise BadImageError("The image is too large to open safely.") from None
    except UnidentifiedImageError:
        raise BadImageError("That file is not an image I can read.") from None
    except (OSError, SyntaxError, ValueError, EOFError):
        raise BadImageError("The image is damaged or incomplete.") from None


def _check_shape(width: int, height: int, max_pixels: int) -> None:
    if width * height > max_pixels:
        raise BadImageError(
            f"The image is too large ({width}×{height} pixels); "
            f"send one under {max_pixels // 1_000_000} megapixels."
        )
    if max(width, height) > MAX_ASPECT_RATIO * max(min(width, height), 1):
        raise BadImageError(
            f"The image is too long and thin ({width}×{height} pixels); send one whose "
            f"longer side is at most {MAX_ASPECT_RATIO} times its shorter side."
        )


_ORIENTATION = 0x0112
_TURNS = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


def _shrink(image: Image.Image, side: int) -> Image.Image:
    """Scale down, in the file's own kind of samples, so that the shorter side is `side`.

    The decoded picture is averaged down a strip at a time: converting or premultiplying it
    whole (as `resize` and `reduce` do with transparency) would copy it at full size.
    """
    width, height = image.size
    factor = min(width, height) // side
    if factor < 1:
        return image
    if factor > 1:
        rows = max(factor, _STRIP_PIXELS // width // factor * factor)
        strips = [
            _reducible(image.crop((0, top, width, min(top + rows, height)))).reduce(factor)
            for top in range(0, height, rows)
        ]
        image = Image.new(strips[0].mode, (strips[0].width, sum(s.height for s in strips)))
        top = 0
        for strip in strips:
            image.paste(strip, (0, top))
            top += strip.height
    shorter = min(image.size)
    size = (
        max(1, round(image.width * side / shorter)),
        max(1, round(image.height * side / shorter)),
    )
    return _reducible(image).resize(size, Image.Resampling.BICUBIC)


_STRIP_PIXELS = 2_000_000  # about 8 MB a strip at 4 bytes a pixel


def _reducible(image: Image.Image) -> Image.Image:
    """Samples that can be averaged: palettes and colour keys become alpha, 16-bit becomes 32."""
    if image.mode in ("P", "PA") or "transparency" in image.info:
        return _with_alpha(image)
    if image.mode.startswith("I;16") or image.mode == "1":
        return image.convert("I" if image.mode != "1" else "L")
    return image


def _with_alpha(image: Image.Image) -> Image.Image:
    """Palette and colour-key transparency as an alpha channel (16-bit keys are dropped)."""
    if image.mode == "L":
        return image.convert("LA")
    if image.mode in ("P", "PA", "RGB"):
        return image.convert(
            "RGBA" if "transparency" in image.info or image.mode == "PA" else "RGB"
        )
    return image


def _to_rgb(image: Image.Image) -> Image.Image:
    """Flatten transparency onto white (a transparent logo must not turn black), and bring
    16-bit, 32-bit and floating-point samples to 0-255 instead of clipping them."""
    if image.mode == "P" or "transparency" in image.info:
        image = _with_alpha(image)
    if image.mode.startswith("I") or image.mode == "F":
        image = _to_8_bit(image)
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        background = Image.new("RGB", image.size, _WHITE)
        background.paste(image.convert("RGBA"), mask=image.getchannel("A"))
        return background
    return image if image.mode == "RGB" else image.convert("RGB")


def _to_8_bit(image: Image.Image) -> Image.Image:
    """Integers scale by the bit depth their largest value needs (16-bit PNG and TIFF use
    0-65535); floats are 0.0-1.0 by convention, or else stretched over their own range."""
    if image.mode != "F":
        image = image.convert("I")
    low, high = image.getextrema()
    if image.mode == "F":
        if low >= 0 and high <= 1:
            scale, offset = 255.0, 0.0
        else:
            scale = 255.0 / (high - low) if high > low else 0.0
            offset = -low * scale
    else:
        depth = next(bits for bits in (8, 16, 32) if high < 1 << bits)
        scale, offset = 255.0 / ((1 << depth) - 1), 0.0
    return image.point(lambda value: value * scale + offset).convert("L")
