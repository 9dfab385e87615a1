"""Remove metadata that may identify a patient from PNG and JPEG files, without touching the
pixels: the chunks and segments that carry text, EXIF, XMP, ICC profiles, comments and times
are dropped; the EXIF orientation, which changes how the pixels are shown, is kept in a
minimal EXIF of its own."""

import io
import struct
import zlib

from PIL import Image

from ml_core.errors import ImageDecodeError

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PNG_METADATA_CHUNKS = {b"tEXt", b"zTXt", b"iTXt", b"tIME", b"eXIf", b"iCCP"}
EXIF_HEADER = b"Exif\x00\x00"
ORIENTATION_TAG = 0x0112
JPEG_SOI, JPEG_SOS = 0xD8, 0xDA
# APP0 (JFIF) and APP14 (Adobe: how CMYK and YCbCr are stored) are needed to decode.
JPEG_KEPT_APP_MARKERS = {0xE0, 0xEE}
JPEG_COMMENT = 0xFE


def strip_metadata(data: bytes, image_format: str) -> bytes:
    """`data` without identifying metadata; PNG and JPEG only (DICOM is de-identified by
    ml_core.dicom). Call it on input that decode_image accepted."""
    try:
        orientation = _orientation(data)
        if image_format == "PNG":
            return _strip_png(data, orientation)
        if image_format == "JPEG":
            return _strip_jpeg(data, orientation)
    except (struct.error, IndexError):
        raise ImageDecodeError(f"The {image_format} file's structure is corrupt.") from None
    raise ValueError(f"No metadata stripping for {image_format}")


def _orientation(data: bytes) -> int:
    with Image.open(io.BytesIO(data)) as image:
        return int(image.getexif().get(ORIENTATION_TAG, 1) or 1)


def _minimal_exif(orientation: int) -> bytes:
    exif = Image.Exif()
    exif[ORIENTATION_TAG] = orientation
    return exif.tobytes()  # starts with the "Exif\0\0" header


def _strip_png(data: bytes, orientation: int) -> bytes:
    chunks = []
    position = len(PNG_SIGNATURE)
    exif_pending = orientation != 1
    while position < len(data):
        (length,) = struct.unpack(">I", data[position : position + 4])
        kind = data[position + 4 : position + 8]
        end = position + 12 + length
        if kind == b"IDAT" and exif_pending:  # eXIf must come before the image data
            chunks.append(_png_chunk(b"eXIf", _minimal_exif(orientation)[len(EXIF_HEADER) :]))
            exif_pending = False
        if kind not in PNG_METADATA_CHUNKS:
            chunks.append(data[position:end])
        position = end
    return PNG_SIGNATURE + b"".join(chunks)


def _png_chunk(kind: bytes, payload: bytes) -> bytes:
    crc = zlib.crc32(kind + payload)
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", crc)


def _strip_jpeg(data: bytes, orientation: int) -> bytes:
    segments = []
    position = 2  # after SOI
    while position < len(data):
        marker = data[position + 1]
        if data[position] != 0xFF:
            raise IndexError("not a marker")
        if marker == 0xFF:  # fill byte
            position += 1
            continue
        if marker == JPEG_SOS:
            break
        (length,) = struct.unpack(">H", data[position + 2 : position + 4])
        end = position + 2 + length
        application = 0xE0 <= marker <= 0xEF
        if not ((application and marker not in JPEG_KEPT_APP_MARKERS) or marker == JPEG_COMMENT):
            segments.append(data[position:end])
        position = end
    if orientation != 1:
        after_jfif = 1 if segments and segments[0][1] == 0xE0 else 0
        segments.insert(after_jfif, _jpeg_app1(_minimal_exif(orientation)))
    # The scans and everything after them are copied untouched.
    return data[:2] + b"".join(segments) + data[position:]


def _jpeg_app1(payload: bytes) -> bytes:
    return b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload
