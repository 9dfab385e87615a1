"""The people who use the service, as Django groups. A role decides what a user may do;
`is_staff` only opens the admin (where the role's permissions apply). Superusers may do
everything."""

from enum import StrEnum

from django.contrib.auth.models import Group


class Role(StrEnum):
    CLINICIAN = "clinician"
    RADIOLOGIST = "radiologist"
    ML_ENGINEER = "ml_engineer"


def user_has_role(user, *roles: Role) -> bool:
    if not user or not user.is_authenticated or not user.is_active:
        return False
    if user.is_superuser:
        return True
    return user.groups.filter(name__in=[str(role) for role in roles]).exists()


def role_group(role: Role) -> Group:
    group, _ = Group.objects.get_or_create(name=str(role))
    return group


# Django model permissions each role's group carries, for staff members using the admin.
ROLE_PERMISSIONS = {
    Role.CLINICIAN: ["scans.view_scan", "scans.view_prediction", "scans.view_study"],
    Role.RADIOLOGIST: [
        "scans.view_scan",
        "scans.view_prediction",
        "scans.view_study",
        "scans.view_reviewevent",
        "scans.view_scanawaitingreview",
        "scans.change_scanawaitingreview",
    ],
    Role.ML_ENGINEER: [
        "scans.view_scan",
        "scans.view_prediction",
        "training.view_modelversion",
        "training.change_modelversion",
        "training.view_trainingrun",
        "training.view_evaluationset",
        "training.view_promotionlog",
        "scans.view_study",
        "gateway.view_resultdelivery",
    ],
}


def sync_role_permissions(**kwargs) -> None:
    """post_migrate: give each role's group its permissions (they exist only after migrate)."""
    from django.contrib.auth.models import Permission

    for role, names in ROLE_PERMISSIONS.items():
        permissions = [
            Permission.objects.filter(
                content_type__app_label=name.split(".")[0], codename=name.split(".")[1]
            ).first()
            for name in names
        ]
        role_group(role).permissions.set([p for p in permissions if p is not None])
