"""Stage 1: turn untrusted bytes into an RGB picture the caption model can read.

Photos come from strangers' phones, so the checks run before any pixel is decoded:
the header alone tells us the size, and a decompression bomb is refused on it.
"""

from __future__ import annotations

import io
import warnings

from PIL import Image, ImageOps, UnidentifiedImageError

from core.errors import BadImageError

# 50 megapixels: more than any phone photo, far less than a bomb's claimed size.
MAX_PIXELS = 50_000_000


def load_image(data: bytes, *, max_pixels: int = MAX_PIXELS) -> Image.Image:
    """Decode the first frame, upright (EXIF orientation), in RGB."""
    if not data:
        raise BadImageError("The file is empty.")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            width, height = image.size
            if width * height > max_pixels:
                raise BadImageError(
                    f"The image is too large ({width}×{height} pixels); "
                    f"send one under {max_pixels // 1_000_000} megapixels."
                )
            image.seek(0)
            image.load()
            image = ImageOps.exif_transpose(image)
            return _to_rgb(image)
    except BadImageError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise BadImageError("The image is too large to open safely.") from None
    except UnidentifiedImageError:
        raise BadImageError("That file is not an image I can read.") from None
    except (OSError, SyntaxError, ValueError, EOFError):
        raise BadImageError("The image is damaged or incomplete.") from None


def _to_rgb(image: Image.Image) -> Image.Image:
    """Flatten transparency onto white: a transparent logo must not turn black."""
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA"):
        background = Image.new("RGB", image.size, (255, 255, 255))
        background.paste(image, mask=image.getchannel("A"))
        return background
    return image if image.mode == "RGB" else image.convert("RGB")
