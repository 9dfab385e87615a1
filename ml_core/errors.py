"""Why an upload cannot be read; every message is meant for the uploader."""


class ImageDecodeError(ValueError):
    """The upload is not an image this service can read."""


class ImageTooLarge(ImageDecodeError):
    """The image's declared size exceeds the pixel limit (checked before decoding)."""


class UnsupportedEncoding(ImageDecodeError):
    """A known format in an encoding no installed decoder reads (a compressed DICOM transfer
    syntax without its plugin)."""
