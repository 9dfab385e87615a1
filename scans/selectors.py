from django.db.models import Count, F, Q, QuerySet
from django.db.models.functions import Abs
from django.utils import timezone

from accounts.roles import Role, user_has_role
from accounts.services import user_organisation
from scans.models import ReviewEvent, Scan, Study


def scans_visible_to(user) -> QuerySet[Scan]:
    """Radiologists, ML engineers and superusers see every scan; clinicians see the scans of their
    organisation (their own uploads, if they belong to none)."""
    scans = Scan.objects.select_related("prediction__model_version")
    if user_has_role(user, Role.RADIOLOGIST, Role.ML_ENGINEER):
        return scans
    organisation = user_organisation(user)
    if organisation is None:
        return scans.filter(uploaded_by=user)
    return scans.filter(organisation=organisation)


def scans_filtered(scans: QuerySet[Scan], *, status: str | None = None, label: str | None = None):
    if status:
        scans = scans.filter(status=status)
    if label:
        scans = scans.filter(prediction__label=label)
    return scans


def review_queue(
    *, positive: bool | None = None, model_version: int | None = None, since=None
) -> QuerySet[Scan]:
    """Predicted scans nobody has reviewed, the most uncertain first: those whose P(abnormal)
    is closest to their version's threshold. Optionally only those the model flagged (or
    not), those a given version predicted, those predicted since a date. A study's slices are
    reviewed with their study (the study page), not one by one here."""
    scans = Scan.objects.filter(
        status=Scan.Status.PREDICTED, confirmed_label="", study__isnull=True
    )
    if positive is not None:
        flagged = Q(prediction__abnormal_score__gte=F("prediction__threshold"))
        scans = scans.filter(flagged if positive else ~flagged)
    if model_version is not None:
        scans = scans.filter(prediction__model_version__version=model_version)
    if since is not None:
        scans = scans.filter(prediction__created__date__gte=since)
    return (
        scans.select_related("prediction__model_version")
        .annotate(margin=Abs(F("prediction__abnormal_score") - F("prediction__threshold")))
        .order_by("margin", "created")
    )


def reviews_today(user) -> int:
    """Scans this user reviewed since midnight (the server's time zone) whose review stands:
    each scan once, however often relabelled, and not one whose review was undone."""
    midnight = timezone.localtime().replace(hour=0, minute=0, second=0, microsecond=0)
    events = ReviewEvent.objects.filter(reviewer=user, created__gte=midnight)
    latest: dict = {}
    for scan_id, new_label in events.order_by("created", "pk").values_list("scan_id", "new_label"):
        latest[scan_id] = new_label
    return sum(1 for new_label in latest.values() if new_label)


def same_image_reviews(scans: list[Scan], visible: QuerySet[Scan]) -> dict:
    """For each scan (by pk), the other confirmed scans of the same bytes (uploaded again, by
    someone else) among those the reader may see; one query for them all."""
    confirmed = (
        visible.filter(sha256__in={scan.sha256 for scan in scans})
        .exclude(confirmed_label="")
        .select_related("confirmed_by")
        .order_by("confirmed_at")
    )
    by_hash: dict[str, list[Scan]] = {}
    for other in confirmed:
        by_hash.setdefault(other.sha256, []).append(other)
    return {
        scan.pk: [other for other in by_hash.get(scan.sha256, []) if other.pk != scan.pk]
        for scan in scans
    }


def study_series(study: Study) -> list[list[Scan]]:
    """The study's slices, series by series (in the order each series first arrived), each
    in anatomical order (slice_position, else as received)."""
    series: dict[str, list[Scan]] = {}
    for scan in study.slices.select_related("prediction").order_by("created", "pk"):
        series.setdefault(scan.series_reference, []).append(scan)
    return [
        sorted(members, key=lambda scan: (scan.slice_position is None, scan.slice_position or 0))
        for members in series.values()
    ]


def studies_visible_to(user) -> QuerySet[Study]:
    """As scans_visible_to: clinicians see their organisation's studies."""
    studies = (
        Study.objects.select_related("model_version")
        .annotate(slice_count=Count("slices"))
        .order_by("-created")
    )
    if user_has_role(user, Role.RADIOLOGIST, Role.ML_ENGINEER):
        return studies
    organisation = user_organisation(user)
    if organisation is None:
        return studies.none()
    return studies.filter(organisation=organisation)
