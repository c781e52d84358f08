import io

import pytest
from PIL import Image

from core.errors import BadImageError
from core.images import load_image
from tests.pictures import animated_gif, picture, png_bomb, two_colour_picture


def test_a_plain_photo_loads_as_rgb_of_the_same_size():
    image = load_image(picture((64, 48), fmt="JPEG"))
    assert (image.mode, image.size) == ("RGB", (64, 48))


@pytest.mark.parametrize(
    ("mode", "color"),
    [("RGBA", (10, 20, 30, 255)), ("L", 128), ("CMYK", (0, 255, 255, 0)), ("LA", (50, 255))],
)
def test_every_colour_mode_becomes_rgb(mode, color):
    fmt = "JPEG" if mode == "CMYK" else "PNG"
    image = load_image(picture((8, 8), color, mode=mode, fmt=fmt))
    assert image.mode == "RGB"


def test_palette_image_becomes_rgb_with_its_colour():
    image = Image.new("P", (4, 4))
    image.putpalette([0, 200, 0] * 256)
    out = io.BytesIO()
    image.save(out, format="PNG")
    loaded = load_image(out.getvalue())
    assert loaded.mode == "RGB"
    assert loaded.getpixel((0, 0)) == (0, 200, 0)


def test_transparent_pixels_become_white_not_black():
    loaded = load_image(picture((4, 4), (255, 0, 0, 0), mode="RGBA"))
    assert loaded.getpixel((0, 0)) == (255, 255, 255)


def test_exif_orientation_is_applied():
    # Orientation 6 means "rotate 90° clockwise to display": a 60x40 sensor image stands upright.
    upright = load_image(picture((60, 40), fmt="JPEG", orientation=6))
    assert upright.size == (40, 60)


def test_exif_rotation_moves_the_pixels_too():
    raw = Image.open(io.BytesIO(two_colour_picture((60, 40))))
    exif = Image.Exif()
    exif[0x0112] = 3  # upside down: left and right swap
    out = io.BytesIO()
    raw.save(out, format="PNG", exif=exif)
    loaded = load_image(out.getvalue())
    red, _, blue = loaded.getpixel((5, 20))
    assert blue > 200 and red < 60


def test_animated_gif_gives_its_first_frame():
    loaded = load_image(animated_gif([(255, 0, 0), (0, 0, 255)]))
    red, _, blue = loaded.getpixel((8, 8))
    assert red > 200 and blue < 60


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "empty"),
        (b"%PDF-1.7 not a picture at all", "not an image"),
        (b"MZ\x90\x00 an exe renamed to .jpg", "not an image"),
        (picture((200, 200), fmt="JPEG")[:300], "damaged"),
        (picture((200, 200), fmt="PNG")[:-40], "damaged"),
    ],
)
def test_files_that_are_not_whole_images_are_refused_clearly(data, message):
    with pytest.raises(BadImageError, match=message):
        load_image(data)


def test_a_decompression_bomb_is_refused_from_its_header():
    bomb = png_bomb(30_000, 30_000)
    assert len(bomb) < 10_000
    with pytest.raises(BadImageError, match="too large"):
        load_image(bomb)


def test_the_pixel_limit_is_a_parameter():
    with pytest.raises(BadImageError, match="30×20 pixels"):
        load_image(picture((30, 20)), max_pixels=500)
