"""PNG and JPEG uploads are stored without metadata that may identify a patient, with their
pixels (and orientation) unchanged."""

import io

import numpy as np
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from PIL import Image, PngImagePlugin

from ml_core.images import decode_image
from ml_core.metadata import strip_metadata
from scans.models import Scan
from tests.images import encode, phantom_pixels

PHI = ["Doe^Jane", "MRN-4471-2093", "1958-04-12"]
LIMIT = 10**7


def grey_image() -> Image.Image:
    pixels = phantom_pixels(size=64, with_stone=True)
    grey = (pixels * 255).astype(np.uint8)
    grey[:8, :16] = 255  # a bright corner: shows whether the orientation survived
    return Image.fromarray(grey, mode="L")


def jpeg_with_metadata(orientation: int = 6) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    exif[0x013B] = PHI[0]  # Artist
    exif[0x010E] = f"{PHI[1]} born {PHI[2]}"  # ImageDescription
    data = encode(grey_image(), "JPEG", quality=95, exif=exif.tobytes(), comment=PHI[0])
    xmp = b"http://ns.adobe.com/xap/1.0/\x00<x:xmpmeta>" + PHI[1].encode() + b"</x:xmpmeta>"
    app1 = b"\xff\xe1" + (len(xmp) + 2).to_bytes(2, "big") + xmp
    return data[:2] + app1 + data[2:]


def png_with_metadata() -> bytes:
    info = PngImagePlugin.PngInfo()
    info.add_text("Patient", PHI[0])
    info.add_text("PatientID", PHI[1], zip=True)
    info.add_itxt("BirthDate", PHI[2])
    return encode(grey_image(), "PNG", pnginfo=info)


def metadata_text(data: bytes) -> str:
    """Everything Pillow reads besides pixels (zTXt decompressed), and the raw bytes."""
    image = Image.open(io.BytesIO(data))
    return f"{image.info} {dict(image.getexif())} {data!r}"


@pytest.mark.parametrize(
    ("data", "image_format"),
    [(jpeg_with_metadata(), "JPEG"), (jpeg_with_metadata(1), "JPEG"), (png_with_metadata(), "PNG")],
    ids=["jpeg-rotated", "jpeg", "png"],
)
def test_metadata_goes_and_the_pixels_stay(data, image_format):
    assert metadata_text(data).count("Doe^Jane") >= 1

    stripped = strip_metadata(data, image_format)

    assert not any(text in metadata_text(stripped) for text in PHI)
    for text in PHI:
        assert text.encode() not in stripped, text
    before = decode_image(data, max_pixels=LIMIT).pixels
    after = decode_image(stripped, max_pixels=LIMIT).pixels
    np.testing.assert_array_equal(after, before)  # same pixels, same orientation


def test_the_orientation_is_kept_in_a_minimal_exif():
    stripped = strip_metadata(jpeg_with_metadata(orientation=6), "JPEG")

    exif = Image.open(io.BytesIO(stripped)).getexif()
    assert dict(exif) == {0x0112: 6}


def test_a_file_without_metadata_is_kept_byte_for_byte():
    plain = encode(grey_image(), "PNG")

    assert strip_metadata(plain, "PNG") == plain


@pytest.mark.django_db
def test_uploads_are_stored_without_their_metadata(client_for, django_capture_on_commit_callbacks):
    client = client_for("clinician")
    with django_capture_on_commit_callbacks():
        responses = [
            client.post(
                "/api/scans/",
                {"file": SimpleUploadedFile(name, data)},
                format="multipart",
            )
            for name, data in [("a.jpg", jpeg_with_metadata()), ("b.png", png_with_metadata())]
        ]

    for response in responses:
        assert response.status_code == 202, response.content
        stored = Scan.objects.get(pk=response.json()["id"]).file.read()
        for text in PHI:
            assert text.encode() not in stored
