from django.db.models import QuerySet

from accounts.roles import Role, user_has_role
from scans.models import Scan


def scans_visible_to(user) -> QuerySet[Scan]:
    """Radiologists, ML engineers and staff see every scan; clinicians see their uploads."""
    scans = Scan.objects.select_related("prediction__model_version")
    if user_has_role(user, Role.RADIOLOGIST, Role.ML_ENGINEER):
        return scans
    return scans.filter(uploaded_by=user)


def scans_filtered(scans: QuerySet[Scan], *, status: str | None, label: str | None):
    if status:
        scans = scans.filter(status=status)
    if label:
        scans = scans.filter(prediction__label=label)
    return scans
