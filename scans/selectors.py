from django.db.models import F, QuerySet
from django.db.models.functions import Abs

from accounts.roles import Role, user_has_role
from accounts.services import user_organisation
from scans.models import Scan


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


def scans_filtered(scans: QuerySet[Scan], *, status: str | None, label: str | None):
    if status:
        scans = scans.filter(status=status)
    if label:
        scans = scans.filter(prediction__label=label)
    return scans


def review_queue() -> QuerySet[Scan]:
    """Predicted scans nobody has reviewed, the most uncertain first: those whose P(abnormal)
    is closest to their version's threshold."""
    return (
        Scan.objects.filter(status=Scan.Status.PREDICTED, confirmed_label="")
        .select_related("prediction__model_version")
        .annotate(margin=Abs(F("prediction__abnormal_score") - F("prediction__threshold")))
        .order_by("margin", "created")
    )
