import hashlib

from django.conf import settings
from django.core.files.base import ContentFile
from django.db import transaction

from ml_core.images import decode_image
from scans.models import Scan
from scans.tasks import classify_scans

FILE_EXTENSIONS = {"PNG": "png", "JPEG": "jpg"}


def scan_create(*, data: bytes, uploaded_by) -> Scan:
    """Validate an upload by decoding it, store it and queue it for inference.

    Raises ml_core.images.ImageDecodeError for input that is not a readable image; then
    nothing is stored. The inference task is sent only once the row is committed.
    """
    image = decode_image(
        data,
        max_pixels=settings.KIDNEY_MAX_IMAGE_PIXELS,
        min_side=settings.KIDNEY_MIN_IMAGE_SIDE,
    )
    scan = Scan(
        sha256=hashlib.sha256(data).hexdigest(),
        content_type=image.content_type,
        width=image.width,
        height=image.height,
        uploaded_by=uploaded_by,
    )
    try:
        with transaction.atomic():
            scan.file.save(f"scan.{FILE_EXTENSIONS[image.format]}", ContentFile(data), save=False)
            scan.save()
            transaction.on_commit(lambda: classify_scans.delay([str(scan.id)]))
    except BaseException:
        if scan.file.name:
            scan.file.storage.delete(scan.file.name)
        raise
    return scan
