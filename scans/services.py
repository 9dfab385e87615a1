import hashlib
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.core.files.base import ContentFile
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from accounts.services import user_organisation
from ml_core import dicom
from ml_core.decision import NEGATIVE_CLASS
from ml_core.errors import ImageDecodeError
from ml_core.images import DecodedImage, decode_image
from ml_core.metadata import strip_metadata
from scans.dispatch import heatmap_enqueue, inference_enqueue, study_enqueue
from scans.models import EVIDENCE_METHOD, Prediction, ReviewEvent, Scan, Study

FILE_EXTENSIONS = {"PNG": "png", "JPEG": "jpg", "DICOM": "dcm"}


@dataclass(frozen=True)
class PreparedUpload:
    """What is stored for an upload: its bytes (DICOM de-identified, PNG and JPEG without
    their metadata), their hash, the decoded image and, for DICOM, the study reference."""

    data: bytes
    sha256: str
    image: DecodedImage
    study_reference: str = ""


def upload_prepare(data: bytes, *, frame: int | None = None) -> PreparedUpload:
    """Validate an upload by decoding it and turn it into what may be stored.

    Raises ml_core.images.ImageDecodeError for input that cannot be accepted.
    """
    image = decode_image(
        data,
        max_pixels=settings.KIDNEY_MAX_IMAGE_PIXELS,
        min_side=settings.KIDNEY_MIN_IMAGE_SIDE,
        frame=frame,
    )
    reference = ""
    if image.format == "DICOM":
        deidentified = dicom.deidentify(
            data, key=settings.KIDNEY_STUDY_HASH_KEY.encode(), frame=frame
        )
        data, reference = deidentified.data, deidentified.study_reference
    else:
        data = strip_metadata(data, image.format)
    return PreparedUpload(
        data=data,
        sha256=hashlib.sha256(data).hexdigest(),
        image=image,
        study_reference=reference,
    )


def scan_create(*, data: bytes, uploaded_by, frame: int | None = None) -> tuple[Scan, bool]:
    """Store an upload and queue it for inference; return (the scan, whether it is new).

    The same bytes from the same user return the scan already stored, with no second
    inference. Raises ml_core.images.ImageDecodeError for input that cannot be accepted; then
    nothing is stored. The inference task is sent only once the row is committed.
    """
    upload = upload_prepare(data, frame=frame)
    existing = Scan.objects.filter(uploaded_by=uploaded_by, sha256=upload.sha256).first()
    if existing is not None:
        return existing, False
    try:
        with transaction.atomic():
            scan = _store(
                upload, uploaded_by=uploaded_by, organisation=user_organisation(uploaded_by)
            )
            inference_enqueue([scan.id])
    except IntegrityError:
        # The same upload, sent twice at once: the other request stored it.
        return Scan.objects.get(uploaded_by=uploaded_by, sha256=upload.sha256), False
    return scan, True


def heatmap_request(*, prediction: Prediction) -> None:
    heatmaps_request(prediction_ids=[prediction.pk])


def heatmaps_request(*, prediction_ids: list) -> None:
    """Queue each prediction's evidence map once, however often it is polled, unless it has
    one by the current method; a request whose message may have been lost (older than the
    sweep's wait) is sent again."""
    now = timezone.now()
    resend_before = now - timedelta(seconds=settings.KIDNEY_REQUEUE_QUEUED_AFTER_SECONDS)
    with transaction.atomic():
        wanted = (
            Prediction.objects.select_for_update()
            .filter(pk__in=prediction_ids)
            .filter(Q(heatmap="") | ~Q(heatmap_method=EVIDENCE_METHOD))
            .filter(Q(heatmap_requested_at=None) | Q(heatmap_requested_at__lt=resend_before))
        )
        scan_ids = list(wanted.values_list("scan_id", flat=True))
        Prediction.objects.filter(scan_id__in=scan_ids).update(heatmap_requested_at=now)
        for scan_id in scan_ids:
            heatmap_enqueue(scan_id)


def scan_import(*, data: bytes, label: str, imported_by, source: str = "") -> tuple[Scan, bool]:
    """Store a labelled image for training (never sent for inference), with a review event
    marked as imported, so every label has its source. Idempotent by content: returns (the
    scan, whether it was created)."""
    upload = upload_prepare(data)
    existing = Scan.objects.filter(sha256=upload.sha256).first()
    if existing is not None:
        return existing, False
    with transaction.atomic():
        scan = _store(upload, uploaded_by=imported_by, status=Scan.Status.IMPORTED)
        event = ReviewEvent.objects.create(
            scan=scan,
            reviewer=imported_by,
            new_label=label,
            note=f"Imported from {source}" if source else "Imported",
            source=ReviewEvent.Source.IMPORT,
        )
        scan.confirmed_label = label
        scan.confirmed_by = imported_by
        scan.confirmed_at = event.created
        scan.review_version = 1
        scan.save(
            update_fields=["confirmed_label", "confirmed_by", "confirmed_at", "review_version"]
        )
    return scan, True


def study_slice_store(
    *,
    data: bytes,
    uploaded_by,
    organisation,
    calling_ae_title: str,
    series_uid: str,
    slice_position: float | None,
) -> tuple[Scan, Study, bool]:
    """Store one DICOM instance of a study as a slice of it; return (the slice, its study,
    whether the slice is new). The same instance again is the slice already stored. A new
    slice keeps its study receiving (or opens a triaged one again). Call it inside the
    caller's transaction, so that whatever else the caller keeps of the instance is stored
    with it or not at all. Raises ImageDecodeError for what cannot be accepted."""
    upload = upload_prepare(data)
    if not upload.study_reference:
        raise ImageDecodeError("The DICOM instance has no StudyInstanceUID.")
    now = timezone.now()
    study, _ = Study.objects.select_for_update().get_or_create(
        organisation=organisation,
        study_reference=upload.study_reference,
        defaults={"calling_ae_title": calling_ae_title, "last_received": now},
    )
    scan = Scan.objects.filter(uploaded_by=uploaded_by, sha256=upload.sha256).first()
    created = scan is None
    if created:
        key = settings.KIDNEY_STUDY_HASH_KEY.encode()
        scan = _store(
            upload,
            uploaded_by=uploaded_by,
            organisation=organisation,
            study=study,
            series_reference=dicom.study_reference(series_uid, key=key),
            slice_position=slice_position,
        )
        study.status = Study.Status.RECEIVING
    if study.status == Study.Status.RECEIVING:
        study.last_received = now
    study.save(update_fields=["status", "last_received"])
    return scan, study, created


def studies_complete(*, quiet_before) -> list:
    """Studies with no new instance since `quiet_before` are complete: queue them for
    classification. Returns their ids."""
    with transaction.atomic():
        ready = list(
            Study.objects.select_for_update(skip_locked=True)
            .filter(status=Study.Status.RECEIVING, last_received__lt=quiet_before)
            .values_list("pk", flat=True)
        )
        Study.objects.filter(pk__in=ready).update(status=Study.Status.QUEUED, attempts=0)
        for study_id in ready:
            study_enqueue(study_id)
    return ready


def _store(upload: PreparedUpload, **fields) -> Scan:
    """Write the file and the row together: if the row fails, the file is removed."""
    scan = Scan(
        sha256=upload.sha256,
        content_type=upload.image.content_type,
        width=upload.image.width,
        height=upload.image.height,
        study_reference=upload.study_reference,
        **fields,
    )
    try:
        with transaction.atomic():
            extension = FILE_EXTENSIONS[upload.image.format]
            scan.file.save(f"scan.{extension}", ContentFile(upload.data), save=False)
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
        scan = _scan_for_review(scan_id, read_version)
        prediction = Prediction.objects.filter(scan=scan).select_related("model_version").first()
        allowed = set(settings.KIDNEY_CLASSES) | set(
            prediction.model_version.classes if prediction else []
        )
        if label not in allowed:
            raise UnknownLabel(f"Unknown label {label!r}; one of: {', '.join(sorted(allowed))}.")
        return _review_record(scan, reviewer, label, note, prediction)


class NothingToUndo(ValueError):
    pass


def scan_review_undo(*, scan_id, reviewer, read_version: int) -> ReviewEvent:
    """Undo the scan's last review by a new review event that puts back the label it had
    before (unreviewed: back in the queue, out of the training labels). History is never
    edited; undoing twice undoes the undo."""
    with transaction.atomic():
        scan = _scan_for_review(scan_id, read_version)
        last = scan.review_events.filter(source=ReviewEvent.Source.REVIEW).first()
        if last is None:
            raise NothingToUndo("This scan has no review to undo.")
        prediction = Prediction.objects.filter(scan=scan).select_related("model_version").first()
        note = f"Undo of the review of {last.created:%Y-%m-%d %H:%M:%S} ({last.new_label})"
        return _review_record(scan, reviewer, last.old_label, note, prediction)


def _scan_for_review(scan_id, read_version: int) -> Scan:
    scan = Scan.objects.select_for_update().get(pk=scan_id)
    if scan.review_version != read_version:
        raise StaleReview(scan.review_version)
    return scan


def _review_record(scan: Scan, reviewer, label: str, note: str, prediction) -> ReviewEvent:
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
    scan.confirmed_by = reviewer if label else None
    scan.confirmed_at = event.created if label else None
    scan.review_version += 1
    scan.save(update_fields=["confirmed_label", "confirmed_by", "confirmed_at", "review_version"])
    return event


class StudyNotReviewable(ValueError):
    pass


class StudyNotTriaged(ValueError):
    pass


def study_review(
    *,
    study_id,
    reviewer,
    verdict: str,
    stone_slices: list,
    read_version: int,
    note: str = "",
) -> Study:
    """Confirm or correct a triaged study's verdict. It reaches training as slice labels only
    where it is unambiguous: a normal study labels every slice normal; an abnormal one labels
    the slices the radiologist marks (at least one) with the verdict, and no other. Each
    slice's label is a review event like any other; a stale read is refused."""
    with transaction.atomic():
        study = Study.objects.select_for_update().get(pk=study_id)
        if study.review_version != read_version:
            raise StaleReview(study.review_version)
        if study.status != Study.Status.TRIAGED:
            raise StudyNotTriaged(f"The study is {study.status}; review it once triaged.")
        classes = set(settings.KIDNEY_CLASSES)
        if study.model_version is not None:
            classes |= set(study.model_version.classes)
        if verdict not in classes:
            raise UnknownLabel(f"Unknown label {verdict!r}; one of: {', '.join(sorted(classes))}.")
        slices = {str(scan.pk): scan for scan in study.slices.select_for_update()}
        marked = [str(scan_id) for scan_id in stone_slices]
        if verdict == NEGATIVE_CLASS:
            if marked:
                raise StudyNotReviewable("A normal study has no slices to mark.")
            labelled = list(slices)
        else:
            if not marked:
                raise StudyNotReviewable(
                    f"Mark the slices that show the {verdict}: only they become training labels."
                )
            unknown = [scan_id for scan_id in marked if scan_id not in slices]
            if unknown:
                raise StudyNotReviewable(f"Not slices of this study: {', '.join(unknown)}.")
            labelled = marked
        event_note = f"Study review ({verdict})" + (f": {note}" if note else "")
        predictions = {
            str(p.scan_id): p
            for p in Prediction.objects.filter(scan_id__in=labelled).select_related("model_version")
        }
        for scan_id in labelled:
            _review_record(slices[scan_id], reviewer, verdict, event_note, predictions.get(scan_id))
        study.confirmed_verdict = verdict
        study.confirmed_by = reviewer
        study.confirmed_at = timezone.now()
        study.review_version += 1
        study.save(
            update_fields=["confirmed_verdict", "confirmed_by", "confirmed_at", "review_version"]
        )
    return study
