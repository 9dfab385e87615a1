"""Decode an uploaded file into a greyscale intensity image.

This is the one entry point for every input format: the web process calls it to validate an
upload, the worker and the training pipeline call it to read pixels. It trusts the bytes, never
a file name or a declared content type.
"""

import io
import warnings
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from ml_core import dicom
from ml_core.errors import ImageDecodeError, ImageTooLarge, require_size

# Formats Pillow may try; everything else it knows (TIFF, GIF, PSD, ...) is refused, which
# also keeps the attack surface of the image parsers small.
ACCEPTED_PILLOW_FORMATS = ("PNG", "JPEG")
CONTENT_TYPES = {"PNG": "image/png", "JPEG": "image/jpeg", "DICOM": dicom.CONTENT_TYPE}


@dataclass(frozen=True)
class DecodedImage:
    """Pixels as float32 intensities in [0, 1], shape (height, width)."""

    pixels: np.ndarray
    format: str
    content_type: str

    @property
    def height(self) -> int:
        return int(self.pixels.shape[0])

    @property
    def width(self) -> int:
        return int(self.pixels.shape[1])


def decode_image(
    data: bytes,
    *,
    max_pixels: int,
    min_side: int = 1,
    window: dicom.CtWindow = dicom.SOFT_TISSUE_WINDOW,
    frame: int | None = None,
) -> DecodedImage:
    """Decode PNG or JPEG bytes of any mode, or a DICOM CT slice, into a greyscale intensity
    image. DICOM becomes Hounsfield units seen through `window` (dicom.slice_intensity);
    `frame` picks one frame of a multi-frame DICOM file.

    Raises ImageDecodeError (ImageTooLarge, UnsupportedEncoding) with a message meant for the
    uploader.
    """
    if not data:
        raise ImageDecodeError("The file is empty.")
    if dicom.is_dicom(data):
        pixels = dicom.slice_intensity(
            data, window=window, max_pixels=max_pixels, min_side=min_side, frame=frame
        )
        return DecodedImage(pixels=pixels, format="DICOM", content_type=dicom.CONTENT_TYPE)
    if frame is not None:
        raise ImageDecodeError("A frame can only be chosen in a multi-frame DICOM file.")
    try:
        image = Image.open(io.BytesIO(data), formats=ACCEPTED_PILLOW_FORMATS)
    except UnidentifiedImageError:
        raise ImageDecodeError("The file is not a PNG, JPEG or DICOM image.") from None
    except Image.DecompressionBombError:
        # Pillow's own guard, hit by headers claiming billions of pixels.
        raise ImageTooLarge(
            f"The image is far too large; at most {max_pixels} pixels are accepted."
        ) from None
    except (OSError, ValueError, SyntaxError) as error:
        raise ImageDecodeError(f"The image header is corrupt ({error}).") from None

    require_size(*image.size, max_pixels=max_pixels, min_side=min_side)
    image_format = image.format
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image.load()
            image = ImageOps.exif_transpose(image)
            pixels = _to_intensity(image)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombWarning) as error:
        raise ImageDecodeError(f"The image data is truncated or corrupt ({error}).") from None
    return DecodedImage(
        pixels=pixels, format=image_format, content_type=CONTENT_TYPES[image_format]
    )


def _to_intensity(image: Image.Image) -> np.ndarray:
    """Map any Pillow mode to float32 grey in [0, 1].

    CT is a single-channel modality: colour in an export carries no diagnostic signal, so
    colour modes become luminance. Transparent pixels become black, the CT background.
    High-bit-depth grey has no known intensity scale (a PNG carries no rescale slope), so it is
    stretched from its minimum to its maximum.
    """
    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        values = np.asarray(image, dtype=np.float32)
        low, high = float(values.min()), float(values.max())
        if high <= low:
            return np.zeros(values.shape, dtype=np.float32)
        return (values - low) / (high - low)
    if "A" in image.getbands() or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        black = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
        image = Image.alpha_composite(black, rgba)
    grey = image.convert("L")
    return np.asarray(grey, dtype=np.float32) / 255.0


def intensity_png(pixels: np.ndarray, *, max_side: int | None = None) -> bytes:
    """An intensity image as an 8-bit grey PNG, shrunk to fit `max_side` if given: what a
    browser shows of any input, DICOM included."""
    picture = Image.fromarray((np.clip(pixels, 0.0, 1.0) * 255).astype(np.uint8), mode="L")
    if max_side:
        picture.thumbnail((max_side, max_side))
    output = io.BytesIO()
    picture.save(output, format="PNG")
    return output.getvalue()
