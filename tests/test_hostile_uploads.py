"""Malformed and hostile uploads: each gets its status and a clear message, and leaves no row
and no file behind."""

import zlib
from dataclasses import dataclass, field

import numpy as np
import pytest
from django.conf import settings
from django.core.files.uploadedfile import SimpleUploadedFile
from PIL import Image

from scans.models import Scan
from tests import dicom_files
from tests.images import encode, phantom_jpeg, phantom_png, png_bomb


@dataclass(frozen=True)
class Case:
    data: bytes | None
    status: int
    message: str
    fields: dict = field(default_factory=dict)
    request: dict = field(default_factory=dict)  # extra WSGI environ
    json: bool = False


def png_with_corrupt_pixels() -> bytes:
    data = bytearray(phantom_png(size=64))
    start = data.index(b"IDAT") + 4
    data[start + 10 : start + 30] = b"\xff" * 20
    return bytes(data)


def jpeg_declaring(width: int, height: int) -> bytes:
    """A small JPEG whose frame header claims width x height."""
    data = bytearray(phantom_jpeg(size=64))
    sof = data.index(b"\xff\xc0")
    data[sof + 5 : sof + 9] = height.to_bytes(2, "big") + width.to_bytes(2, "big")
    return bytes(data)


def png_chunk(kind: bytes, payload: bytes) -> bytes:
    return (
        len(payload).to_bytes(4, "big")
        + kind
        + payload
        + zlib.crc32(kind + payload).to_bytes(4, "big")
    )


def dicom_without_pixels(dataset) -> None:
    del dataset.PixelData


def dicom_rgb(dataset) -> None:
    dataset.SamplesPerPixel = 3


def dicom_huge(dataset) -> None:
    dataset.Rows = dataset.Columns = 60000


def dicom_short_pixels(dataset) -> None:
    dataset.PixelData = dataset.PixelData[:1000]


def dicom_bad_slope(dataset) -> None:
    dataset["RescaleSlope"].value = "1e999"


def dicom_modality(name: str):
    def edit(dataset) -> None:
        dataset.Modality = name

    return edit


NOT_READABLE = "not a PNG, JPEG or DICOM"
CASES = {
    "empty-file": Case(b"", 400, "empty"),
    "text": Case(b"Patient: Jane Doe\nNo image here.\n", 400, NOT_READABLE),
    "html-script": Case(b"<html><script>alert(1)</script></html>", 400, NOT_READABLE),
    "svg": Case(b'<svg xmlns="http://www.w3.org/2000/svg"><script/></svg>', 400, NOT_READABLE),
    "pdf": Case(b"%PDF-1.7\n1 0 obj<<>>endobj\n%%EOF", 400, NOT_READABLE),
    "zip": Case(b"PK\x03\x04" + b"\x00" * 100, 400, NOT_READABLE),
    "elf": Case(b"\x7fELF\x02\x01\x01" + b"\x00" * 100, 400, NOT_READABLE),
    "gif": Case(encode(Image.new("L", (64, 64)), "GIF"), 400, NOT_READABLE),
    "tiff": Case(encode(Image.new("L", (64, 64)), "TIFF"), 400, NOT_READABLE),
    "bmp": Case(encode(Image.new("L", (64, 64)), "BMP"), 400, NOT_READABLE),
    "webp": Case(encode(Image.new("RGB", (64, 64)), "WEBP"), 400, NOT_READABLE),
    "png-signature-only": Case(b"\x89PNG\r\n\x1a\n", 400, NOT_READABLE),
    "png-truncated": Case(phantom_png(size=64)[:300], 400, "truncated or corrupt"),
    "png-corrupt-pixels": Case(png_with_corrupt_pixels(), 400, "truncated or corrupt"),
    "png-no-image-data": Case(
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", (64).to_bytes(4, "big") * 2 + b"\x08\x00\x00\x00\x00")
        + png_chunk(b"IEND", b""),
        400,
        "truncated or corrupt",
    ),
    "png-decompression-bomb": Case(png_bomb(7000), 400, "at most"),
    "jpeg-soi-only": Case(b"\xff\xd8\xff", 400, NOT_READABLE),
    "jpeg-truncated": Case(phantom_jpeg(size=64)[:400], 400, "corrupt"),
    "jpeg-declares-65000x65000": Case(jpeg_declaring(65000, 65000), 400, "at most"),
    "too-small": Case(encode(Image.new("L", (8, 8))), 400, "at least 32"),
    "sliver": Case(encode(Image.new("L", (4000, 2))), 400, "at least 32"),
    "frame-for-a-png": Case(phantom_png(size=64), 400, "only be chosen", fields={"frame": 0}),
    "negative-frame": Case(dicom_files.ct_multiframe(), 400, "frame", fields={"frame": -1}),
    "dicom-magic-only": Case(b"\x00" * 128 + b"DICM", 400, "DICOM"),
    "dicom-garbage": Case(
        b"\x00" * 128 + b"DICM" + np.random.default_rng(0).bytes(400), 400, "DICOM"
    ),
    "dicom-mr": Case(dicom_files.ct_edited(dicom_modality("MR")), 400, "modality is MR"),
    "dicom-no-modality": Case(dicom_files.ct_edited(dicom_modality("")), 400, "modality is"),
    "dicom-no-pixel-data": Case(dicom_files.ct_edited(dicom_without_pixels), 400, "no pixel"),
    "dicom-multiframe-no-frame": Case(dicom_files.ct_multiframe(), 400, "choose one"),
    "dicom-frame-out-of-range": Case(
        dicom_files.ct_multiframe(), 400, "does not exist", fields={"frame": 7}
    ),
    "dicom-truncated-file": Case(dicom_files.ct_slice()[:-5000], 400, "DICOM"),
    "dicom-short-pixel-data": Case(dicom_files.ct_edited(dicom_short_pixels), 400, "DICOM"),
    "dicom-declares-60000x60000": Case(dicom_files.ct_edited(dicom_huge), 400, "at most"),
    "dicom-colour": Case(dicom_files.ct_edited(dicom_rgb), 400, "monochrome"),
    "dicom-infinite-rescale": Case(dicom_files.ct_edited(dicom_bad_slope), 400, "rescale"),
    "dicom-mpeg4": Case(dicom_files.ct_declaring("1.2.840.10008.1.2.4.102"), 415, "MPEG-4"),
    "dicom-hevc": Case(dicom_files.ct_declaring("1.2.840.10008.1.2.4.107"), 415, "HEVC"),
    "dicom-unknown-syntax": Case(dicom_files.ct_declaring("1.2.3.4"), 415, "1.2.3.4"),
    "no-file-field": Case(None, 400, "No file was submitted"),
    "file-as-text-field": Case(None, 400, "not a file", fields={"file": "AAAA"}),
    "json-body": Case(
        None, 415, "Unsupported media type", fields={"file": "iVBORw0KGgo="}, json=True
    ),
    "content-length-over-limit": Case(
        phantom_png(size=64), 413, "too large", request={"CONTENT_LENGTH": str(10**10)}
    ),
    "file-over-limit": Case(b"\x89PNG\r\n\x1a\n" + b"\x00" * (2 * 1024 * 1024), 413, "at most"),
}


def media_files() -> set:
    return {path for path in settings.MEDIA_ROOT.rglob("*") if path.is_file()}


@pytest.mark.django_db
@pytest.mark.parametrize("name", list(CASES))
def test_hostile_upload_is_refused_clearly_and_leaves_nothing_behind(
    name, client_for, settings, django_capture_on_commit_callbacks
):
    settings.KIDNEY_MAX_UPLOAD_BYTES = 1024 * 1024
    case = CASES[name]
    body = dict(case.fields)
    if case.data is not None:
        body["file"] = SimpleUploadedFile("upload.png", case.data)
    files_before = media_files()

    with django_capture_on_commit_callbacks() as callbacks:
        response = client_for("clinician").post(
            "/api/scans/", body, format="json" if case.json else "multipart", **case.request
        )

    assert response.status_code == case.status, response.content
    assert case.message in str(response.json()), response.json()
    assert Scan.objects.count() == 0
    assert media_files() == files_before
    assert callbacks == []


@pytest.mark.django_db
def test_a_hostile_file_name_never_becomes_a_path(client_for, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks():
        response = client_for("clinician").post(
            "/api/scans/",
            {"file": SimpleUploadedFile("../../../etc/passwd\x00.png", phantom_png(size=64))},
            format="multipart",
        )

    assert response.status_code == 202, response.content
    stored = Scan.objects.get().file.name
    assert stored.startswith("scans/")
    assert "passwd" not in stored
    assert (settings.MEDIA_ROOT / stored).is_file()
