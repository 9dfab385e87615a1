import hashlib

from django.conf import settings
from django.core.files.base import ContentFile
from django.db import transaction
from django.utils import timezone

from accounts.services import user_organisation
from ml_core.images import DecodedImage, decode_image
from scans.models import Prediction, ReviewEvent, Scan
from scans.tasks import classify_scans

FILE_EXTENSIONS = {"PNG": "png", "JPEG": "jpg"}


def scan_create(*, data: bytes, uploaded_by) -> Scan:
    """Validate an upload by decoding it, store it and queue it for inference.

    Raises ml_core.images.ImageDecodeError for input that is not a readable image; then
    nothing is stored. The inference task is sent only once the row is committed.
    """
    image = _decode(data)
    with transaction.atomic():
        scan = _store(
            data, image, uploaded_by=uploaded_by, organisation=user_organisation(uploaded_by)
        )
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


class StaleReview(Exception):
    """The scan was reviewed since the version the reviewer read."""

    def __init__(self, current_version: int):
        super().__init__(
            f"The scan was reviewed meanwhile (review version {current_version}); reload it "
            "and review again."
        )
        self.current_version = current_version


class UnknownLabel(ValueError):
    pass


def scan_review(*, scan_id, reviewer, label: str, note: str = "", read_version: int) -> ReviewEvent:
    """Confirm or relabel a scan. Every call is kept as a review event with what the model
    said; a write based on a stale read (another review came first) is refused."""
    with transaction.atomic():
        scan = Scan.objects.select_for_update().get(pk=scan_id)
        if scan.review_version != read_version:
            raise StaleReview(scan.review_version)
        prediction = Prediction.objects.filter(scan=scan).select_related("model_version").first()
        allowed = set(settings.KIDNEY_CLASSES) | set(
            prediction.model_version.classes if prediction else []
        )
        if label not in allowed:
            raise UnknownLabel(f"Unknown label {label!r}; one of: {', '.join(sorted(allowed))}.")
        event = ReviewEvent.objects.create(
            scan=scan,
            reviewer=reviewer,
            old_label=scan.confirmed_label,
            new_label=label,
            note=note,
            model_version=prediction.model_version if prediction else None,
            model_label=prediction.label if prediction else "",
            model_probabilities=prediction.probabilities if prediction else None,
        )
        scan.confirmed_label = label
        scan.confirmed_by = reviewer
        scan.confirmed_at = event.created
        scan.review_version += 1
        scan.save(
            update_fields=["confirmed_label", "confirmed_by", "confirmed_at", "review_version"]
        )
    return event
