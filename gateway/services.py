"""The gateway's writes: an instance received becomes a de-identified slice of its study (its
identifiers kept apart, encrypted), complete studies go to inference, triaged studies' results
go to the outbox and from there to the PACS, and identities are erased once delivered."""

import io
import logging
from dataclasses import dataclass
from datetime import timedelta

import pydicom
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.files.storage import default_storage
from django.db import transaction
from django.db.models import Exists, OuterRef
from django.utils import timezone

from accounts.models import Membership, Organisation
from gateway import identity as identities
from gateway.models import ResultDelivery, StudyIdentity
from ml_core.errors import ImageDecodeError
from ml_core.study import position_along_normal
from scans.models import Study
from scans.services import study_slice_store

logger = logging.getLogger(__name__)

# DIMSE C-STORE statuses (PS3.4 B.2.3, PS3.7 C).
SUCCESS = 0x0000
OUT_OF_RESOURCES = 0xA700  # try again later
DATA_SET_DOES_NOT_MATCH = 0xA900
CANNOT_UNDERSTAND = 0xC000


@dataclass(frozen=True)
class Received:
    status: int
    reason: str = ""
    new: bool = False


def allowed_callers() -> dict[str, str | None]:
    """KIDNEY_DICOM_CALLING_AE_TITLES as {AE title: organisation name or None}."""
    callers = {}
    for item in settings.KIDNEY_DICOM_CALLING_AE_TITLES:
        title, _, organisation = item.partition("=")
        callers[title.strip()] = organisation.strip() or None
    return callers


def gateway_user(calling_ae_title: str):
    """The account a caller's instances are stored under: no password, no role, so it can
    neither log in nor use the API; its organisation is the caller's."""
    organisation_name = (
        allowed_callers().get(calling_ae_title) or settings.KIDNEY_DEFAULT_ORGANISATION
    )
    username = "dicom-" + "".join(c if c.isalnum() else "_" for c in calling_ae_title)
    user, created = get_user_model().objects.get_or_create(username=username)
    if created:
        user.set_unusable_password()
        user.save(update_fields=["password"])
    organisation, _ = Organisation.objects.get_or_create(name=organisation_name)
    Membership.objects.update_or_create(user=user, defaults={"organisation": organisation})
    return user, organisation


def instance_receive(*, data: bytes, calling_ae_title: str) -> Received:
    """Store one C-STORE instance (Part 10 bytes) as a slice of its study, with the study's
    identity, all or nothing. Returns the DIMSE status to answer with; the reason names no
    patient data."""
    try:
        header = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True)
        series_uid = str(header.get("SeriesInstanceUID", ""))
        position = slice_position(header)
    except Exception as error:  # a corrupt header can fail anywhere in the parser
        return Received(CANNOT_UNDERSTAND, f"The DICOM header is corrupt ({type(error).__name__}).")
    stored_file = ""
    try:
        with transaction.atomic():
            user, organisation = gateway_user(calling_ae_title)
            scan, study, new = study_slice_store(
                data=data,
                uploaded_by=user,
                organisation=organisation,
                calling_ae_title=calling_ae_title,
                series_uid=series_uid,
                slice_position=position,
            )
            stored_file = scan.file.name if new else ""
            kept = StudyIdentity.objects.select_for_update().filter(study=study).first()
            merged = identities.merged(
                identities.decrypt(kept.ciphertext) if kept else None, header, str(scan.pk)
            )
            StudyIdentity.objects.update_or_create(
                study=study,
                defaults={"ciphertext": identities.encrypt(merged), "erase_after": None},
            )
    except ImageDecodeError as error:
        modality = str(header.get("Modality", ""))
        status = DATA_SET_DOES_NOT_MATCH if modality != "CT" else CANNOT_UNDERSTAND
        return Received(status, str(error))
    except BaseException:
        # The rows rolled back; the slice's file, written before, goes with them.
        if stored_file:
            default_storage.delete(stored_file)
        raise
    return Received(SUCCESS, new=new)


def slice_position(header) -> float | None:
    """Where the slice lies along its slice normal (mm), else its instance number."""
    try:
        position = header.get("ImagePositionPatient")
        orientation = header.get("ImageOrientationPatient")
        if position is not None and orientation is not None:
            return position_along_normal(
                [float(v) for v in position], [float(v) for v in orientation]
            )
        number = header.get("InstanceNumber")
        return float(number) if number not in (None, "") else None
    except (TypeError, ValueError):
        return None


def deliveries_create(*, destination: str) -> int:
    """Put each triaged study received over DICOM into the outbox for `destination`, once per
    triage. Without a destination, results are not sent and identities are kept only for the
    retention period."""
    now = timezone.now()
    retention = timedelta(hours=settings.KIDNEY_DICOM_IDENTITY_RETENTION_HOURS)
    triaged = Study.objects.filter(status=Study.Status.TRIAGED, identity__isnull=False)
    if not destination:
        return StudyIdentity.objects.filter(study__in=triaged, erase_after__isnull=True).update(
            erase_after=now + retention
        )
    already = ResultDelivery.objects.filter(
        study=OuterRef("pk"), triage_round=OuterRef("triage_round"), destination=destination
    )
    created = 0
    for study in triaged.exclude(Exists(already)):
        _, new = ResultDelivery.objects.get_or_create(
            study=study,
            triage_round=study.triage_round,
            destination=destination,
            defaults={"next_attempt": now},
        )
        created += new
    return created


def delivery_attempt(delivery: ResultDelivery, send) -> bool:
    """Build the study's results and `send(destination, datasets)`; mark it delivered (and its
    identity due for erasure after the retention period), or count the failure and wait
    twice as long as last time before the next try."""
    from gateway.results import result_objects

    study = delivery.study
    try:
        kept = StudyIdentity.objects.get(study=study)
        objects = result_objects(study, identities.decrypt(kept.ciphertext))
        send(delivery.destination, objects)
    except Exception as error:
        delivery.attempts += 1
        wait = min(
            settings.KIDNEY_DICOM_RETRY_MAX_SECONDS,
            settings.KIDNEY_DICOM_RETRY_SECONDS * 2 ** (delivery.attempts - 1),
        )
        delivery.next_attempt = timezone.now() + timedelta(seconds=wait)
        delivery.last_error = _reason(error)
        delivery.save(update_fields=["attempts", "next_attempt", "last_error"])
        logger.warning(
            "Results of study %s to %s: attempt %d failed (%s); next in %.0f s",
            study.pk,
            delivery.destination,
            delivery.attempts,
            type(error).__name__,
            wait,
        )
        # The traceback may quote the study's identifiers: only where debugging is asked for.
        logger.debug("Failed attempt", exc_info=True)
        return False
    now = timezone.now()
    with transaction.atomic():
        delivery.attempts += 1
        delivery.status = ResultDelivery.Status.DELIVERED
        delivery.delivered = now
        delivery.last_error = ""
        delivery.objects_sent = [str(dataset.SOPClassUID.name) for dataset in objects]
        delivery.save()
        retention = timedelta(hours=settings.KIDNEY_DICOM_IDENTITY_RETENTION_HOURS)
        StudyIdentity.objects.filter(study=study).update(erase_after=now + retention)
    logger.info("Results of study %s delivered to %s", study.pk, delivery.destination)
    return True


def _reason(error: Exception) -> str:
    """What the outbox keeps of a failure: a network error's message (it names the
    destination), else only the error's type, since building the results handles the
    study's identifiers and a message could quote them."""
    if isinstance(error, OSError):  # ConnectionError and timeouts are OSErrors
        return f"{type(error).__name__}: {error}"[:1000]
    return f"{type(error).__name__} while building the results (the gateway's DEBUG log has it)"


def deliveries_due(*, limit: int = 20) -> list[ResultDelivery]:
    return list(
        ResultDelivery.objects.filter(
            status=ResultDelivery.Status.PENDING, next_attempt__lte=timezone.now()
        )
        .select_related("study__model_version")
        .order_by("next_attempt")[:limit]
    )


def identities_erase() -> int:
    """Erase the identities whose results are delivered (or whose study failed) and whose
    retention has passed; a study that receives instances again keeps a fresh one."""
    now = timezone.now()
    retention = timedelta(hours=settings.KIDNEY_DICOM_IDENTITY_RETENTION_HOURS)
    StudyIdentity.objects.filter(
        study__status=Study.Status.FAILED, erase_after__isnull=True
    ).update(erase_after=now + retention)
    erased, _ = StudyIdentity.objects.filter(erase_after__lt=now).delete()
    return erased
