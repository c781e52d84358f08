import io

import pytest
from PIL import Image

from bench.bench_images import peak_rise_mib, write_case
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


def mean_colour(image: Image.Image) -> tuple[int, ...]:
    return image.resize((1, 1), Image.Resampling.BOX).getpixel((0, 0))


def encoded(image: Image.Image, fmt: str = "PNG", **options) -> bytes:
    out = io.BytesIO()
    image.save(out, format=fmt, **options)
    return out.getvalue()


@pytest.mark.parametrize("size", [(8, 8), (1200, 900)])
@pytest.mark.parametrize(
    ("mode", "key"), [("RGB", (10, 20, 30)), ("L", 7)], ids=["rgb_key", "grey_key"]
)
def test_a_colour_key_transparency_becomes_white(size, mode, key):
    image = Image.new(mode, size, key)
    image.paste((200, 0, 0) if mode == "RGB" else 200, (0, 0, size[0] // 2, size[1]))
    loaded = load_image(encoded(image, transparency=key))
    expected = (227, 127, 127) if mode == "RGB" else (227, 227, 227)  # half opaque, half white
    assert all(abs(a - b) <= 3 for a, b in zip(mean_colour(loaded), expected, strict=True))


@pytest.mark.parametrize("size", [(8, 8), (1200, 900)])
@pytest.mark.parametrize(
    ("image", "fmt", "grey"),
    [
        (lambda size: Image.new("I;16", size, 32_768), "PNG", 128),
        (lambda size: Image.new("I;16", size, 65_535), "PNG", 255),
        (lambda size: Image.new("F", size, 0.5), "TIFF", 128),
        (lambda size: Image.new("F", size, 1.0), "TIFF", 255),
    ],
    ids=["16bit_half", "16bit_white", "float_half", "float_white"],
)
def test_deep_samples_are_scaled_not_clipped(size, image, fmt, grey):
    loaded = load_image(encoded(image(size), fmt))
    assert loaded.mode == "RGB"
    assert all(abs(channel - grey) <= 1 for channel in mean_colour(loaded))


def test_a_float_picture_outside_0_to_1_is_stretched_over_its_range():
    image = Image.new("F", (8, 8), -4.0)
    image.paste(12.0, (0, 0, 4, 8))
    assert all(
        abs(channel - 128) <= 1 for channel in mean_colour(load_image(encoded(image, "TIFF")))
    )


@pytest.mark.parametrize("size", [(20 * 100 + 1, 100), (100, 20 * 100 + 1), (1, 49_000)])
def test_a_sliver_of_a_picture_is_refused_before_it_is_decoded(size):
    with pytest.raises(BadImageError, match=r"too long and thin .* at most 20 times"):
        load_image(png_bomb(*size))


def test_a_long_panorama_within_the_ratio_is_accepted_and_kept_in_shape():
    loaded = load_image(picture((20 * 500, 500), fmt="JPEG"))
    assert loaded.size == (20 * 384, 384)


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_a_big_photo_comes_out_at_the_models_size(fmt):
    loaded = load_image(two_colour_picture((4000, 3000), fmt=fmt), side=384)
    assert loaded.size == (512, 384)
    red, _, blue = loaded.getpixel((10, 10))
    assert red > 200 and blue < 60  # still the left half's colour


def test_a_big_palette_picture_keeps_its_colours():
    image = Image.new("P", (2000, 1000))
    image.putpalette([0, 200, 0] * 256)
    loaded = load_image(encoded(image))
    assert loaded.size == (768, 384)
    assert all(abs(a - b) <= 1 for a, b in zip(mean_colour(loaded), (0, 200, 0), strict=True))


@pytest.mark.timeout(300)
def test_the_worst_accepted_picture_costs_at_most_300_mb(tmp_path):
    """50 megapixels of RGBA PNG at the longest accepted shape, loaded and made ready for
    BLIP: the most a file makes Pillow decode at once (4 bytes a pixel; JPEG decodes at
    reduced size). It cost 667 MB before pictures were shrunk a strip at a time."""
    path = write_case("png_rgba_longest", tmp_path)
    assert peak_rise_mib(path, with_processor=True) <= 300
