"""Why an upload cannot be read (every message is meant for the uploader), and the size
check that every format makes before decoding."""


class ImageDecodeError(ValueError):
    """The upload is not an image this service can read."""


class ImageTooLarge(ImageDecodeError):
    """The image's declared size exceeds the pixel limit (checked before decoding)."""


class UnsupportedEncoding(ImageDecodeError):
    """A known format in an encoding no installed decoder reads (a compressed DICOM transfer
    syntax without its plugin)."""


def require_size(width: int, height: int, *, max_pixels: int, min_side: int) -> None:
    """Refuse, from the declared size alone, an image too large to decode or too small to
    classify."""
    if width * height > max_pixels:
        raise ImageTooLarge(
            f"The image is {width}x{height} pixels; at most {max_pixels} pixels are accepted."
        )
    if min(width, height) < min_side:
        raise ImageDecodeError(
            f"The image is {width}x{height} pixels; each side must be at least {min_side}."
        )
