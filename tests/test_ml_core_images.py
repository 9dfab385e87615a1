"""ml_core image decoding and preprocessing, without Django."""

import numpy as np
import pytest
from PIL import Image

from ml_core.errors import ImageDecodeError, ImageTooLarge
from ml_core.images import decode_image
from ml_core.preprocessing import PreprocessingConfig, to_model_batch, to_model_input
from tests.images import encode, phantom_jpeg, phantom_png, png_bomb

LIMIT = 10_000_000


def bright_square(mode: str, size: int = 48) -> Image.Image:
    """A black image with a white square in its top-left quarter, in the given mode."""
    grey = np.zeros((size, size), dtype=np.uint8)
    grey[: size // 2, : size // 2] = 255
    image = Image.fromarray(grey, mode="L")
    if mode in ("I;16", "I"):
        return Image.fromarray(grey.astype(np.uint16) * 200).convert(mode)
    return image.convert(mode)


@pytest.mark.parametrize(
    ("mode", "image_format"),
    [
        ("L", "PNG"),
        ("LA", "PNG"),
        ("RGB", "PNG"),
        ("RGBA", "PNG"),
        ("P", "PNG"),
        ("1", "PNG"),
        ("I;16", "PNG"),
        ("L", "JPEG"),
        ("RGB", "JPEG"),
        ("CMYK", "JPEG"),
    ],
)
def test_every_mode_decodes_to_grey_intensities(mode, image_format):
    decoded = decode_image(encode(bright_square(mode), image_format), max_pixels=LIMIT)

    assert decoded.pixels.shape == (48, 48)
    assert decoded.pixels.dtype == np.float32
    assert decoded.format == image_format
    assert decoded.pixels[:24, :24].mean() > 0.9  # the square stays bright
    assert decoded.pixels[24:, 24:].mean() < 0.1  # the background stays dark


def test_transparent_pixels_become_black():
    image = Image.new("RGBA", (40, 40), (255, 255, 255, 0))
    image.paste((255, 255, 255, 255), (0, 0, 20, 40))

    pixels = decode_image(encode(image), max_pixels=LIMIT).pixels

    assert pixels[:, :20].min() == 1.0
    assert pixels[:, 20:].max() == 0.0


def test_sixteen_bit_grey_is_stretched_to_its_range():
    values = np.linspace(1000, 3000, 40 * 40).reshape(40, 40).astype(np.uint16)

    pixels = decode_image(encode(Image.fromarray(values)), max_pixels=LIMIT).pixels

    assert pixels.min() == 0.0
    assert pixels.max() == pytest.approx(1.0)


def test_exif_orientation_is_applied():
    image = Image.new("L", (60, 40), 0)
    exif = image.getexif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display

    decoded = decode_image(encode(image, "JPEG", exif=exif), max_pixels=LIMIT)

    assert (decoded.width, decoded.height) == (40, 60)


def test_a_real_looking_jpeg_and_png_decode_with_their_content_types():
    assert decode_image(phantom_png(), max_pixels=LIMIT).content_type == "image/png"
    assert decode_image(phantom_jpeg(), max_pixels=LIMIT).content_type == "image/jpeg"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "empty"),
        (b"patient: Jane Doe\nfindings: none\n", "not a PNG, JPEG or DICOM"),
        (phantom_png()[:200], "truncated or corrupt"),
        (encode(Image.new("L", (40, 40)), "GIF"), "not a PNG, JPEG or DICOM"),
        (encode(Image.new("L", (40, 40)), "TIFF"), "not a PNG, JPEG or DICOM"),
        (b"\x00" * 128 + b"DICM" + b"\x00" * 64, "modality is missing"),
        (encode(Image.new("L", (8, 8))), "at least 16"),
    ],
    ids=["empty", "text", "truncated", "gif", "tiff", "dicom", "too-small"],
)
def test_unreadable_input_raises_a_clear_error(data, message):
    with pytest.raises(ImageDecodeError, match=message):
        decode_image(data, max_pixels=LIMIT, min_side=16)


def test_a_decompression_bomb_is_refused_from_its_header():
    bomb = png_bomb(6000)
    assert len(bomb) < 100_000

    with pytest.raises(ImageTooLarge, match="6000x6000"):
        decode_image(bomb, max_pixels=LIMIT)


def test_preprocessing_matches_keras_vgg16_preprocess_input():
    from keras.applications.vgg16 import preprocess_input

    pixels = np.random.default_rng(0).random((32, 32)).astype(np.float32)
    config = PreprocessingConfig(input_size=32)

    ours = to_model_input(pixels, config)
    rgb = np.repeat((pixels * 255.0)[:, :, np.newaxis], 3, axis=2)

    np.testing.assert_allclose(ours, preprocess_input(rgb.copy()), atol=1e-3)


def test_standard_normalisation_gives_a_brighter_or_flatter_export_the_same_input():
    pixels = np.random.default_rng(0).random((32, 32)).astype(np.float32) * 0.6 + 0.2
    config = PreprocessingConfig(input_size=32, normalisation="standard")

    ours = to_model_batch([pixels, pixels * 0.5 + 0.3], config)

    np.testing.assert_allclose(ours[0], ours[1], atol=1e-4)
    np.testing.assert_allclose(ours[0].mean(), 0.0, atol=1e-5)
    np.testing.assert_allclose(ours[0].std(), 1.0, atol=1e-4)
    flat = to_model_input(np.full((32, 32), 0.4, np.float32), config)
    np.testing.assert_allclose(flat, 0.0, atol=1e-3)  # a blank image stays finite


def test_preprocessing_resizes_any_input_to_the_model_size():
    config = PreprocessingConfig.from_dict({"input_size": 32, "resample": "bicubic"})
    images = [np.zeros((50, 70), np.float32), np.ones((224, 224), np.float32)]

    batch = to_model_batch(images, config)

    assert batch.shape == (2, 32, 32, 3)
    assert config.to_dict() == {
        "input_size": 32,
        "resample": "bicubic",
        "normalisation": "vgg16",
        "window_width": 400.0,
        "window_level": 40.0,
    }
