import hashlib

from django.conf import settings
from django.core.files.base import ContentFile
from django.db import transaction
from django.utils import timezone

from ml_core.images import DecodedImage, decode_image
from scans.models import Scan
from scans.tasks import classify_scans

FILE_EXTENSIONS = {"PNG": "png", "JPEG": "jpg"}


def scan_create(*, data: bytes, uploaded_by) -> Scan:
    """Validate an upload by decoding it, store it and queue it for inference.

    Raises ml_core.images.ImageDecodeError for input that is not a readable image; then
    nothing is stored. The inference task is sent only once the row is committed.
    """
    image = _decode(data)
    with transaction.atomic():
        scan = _store(data, image, uploaded_by=uploaded_by)
        transaction.on_commit(lambda: classify_scans.delay([str(scan.id)]))
    return scan


def scan_import(*, data: bytes, label: str, imported_by) -> tuple[Scan, bool]:
    """Store a labelled image for training (never sent for inference). Idempotent by content:
    returns (the scan, whether it was created)."""
    existing = Scan.objects.filter(sha256=hashlib.sha256(data).hexdigest()).first()
    if existing is not None:
        return existing, False
    image = _decode(data)
    with transaction.atomic():
        scan = _store(
            data,
            image,
            uploaded_by=imported_by,
            status=Scan.Status.IMPORTED,
            confirmed_label=label,
            confirmed_by=imported_by,
            confirmed_at=timezone.now(),
        )
    return scan, True


def _decode(data: bytes) -> DecodedImage:
    return decode_image(
        data,
        max_pixels=settings.KIDNEY_MAX_IMAGE_PIXELS,
        min_side=settings.KIDNEY_MIN_IMAGE_SIDE,
    )


def _store(data: bytes, image: DecodedImage, **fields) -> Scan:
    """Write the file and the row together: if the row fails, the file is removed."""
    scan = Scan(
        sha256=hashlib.sha256(data).hexdigest(),
        content_type=image.content_type,
        width=image.width,
        height=image.height,
        **fields,
    )
    try:
        with transaction.atomic():
            scan.file.save(f"scan.{FILE_EXTENSIONS[image.format]}", ContentFile(data), save=False)
            scan.save()
    except BaseException:
        if scan.file.name:
            scan.file.storage.delete(scan.file.name)
        raise
    return scan
