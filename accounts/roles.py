"""The people who use the service, as Django groups. Staff users may do everything."""

from enum import StrEnum

from django.contrib.auth.models import Group


class Role(StrEnum):
    CLINICIAN = "clinician"
    RADIOLOGIST = "radiologist"
    ML_ENGINEER = "ml_engineer"


def user_has_role(user, *roles: Role) -> bool:
    if not user or not user.is_authenticated or not user.is_active:
        return False
    if user.is_staff:
        return True
    return user.groups.filter(name__in=[str(role) for role in roles]).exists()


def role_group(role: Role) -> Group:
    group, _ = Group.objects.get_or_create(name=str(role))
    return group
