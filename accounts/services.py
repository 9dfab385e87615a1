from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import transaction

from accounts.models import Membership, Organisation
from accounts.roles import Role, role_group
from accounts.tokens import token_issue, tokens_revoke_all


@transaction.atomic
def api_user_upsert(
    *, username: str, role: Role, organisation: str | None = None, revoke_others: bool = False
) -> tuple[object, str]:
    """Create the user or update its role (one role at a time) and organisation; return it
    and the key of a fresh API token (its other tokens keep working until they expire, or
    are revoked now with `revoke_others`)."""
    user, created = get_user_model().objects.get_or_create(username=username)
    if created:
        user.set_unusable_password()
        user.save(update_fields=["password"])
    user.groups.remove(*user.groups.filter(name__in=[str(item) for item in Role]))
    user.groups.add(role_group(role))
    if organisation or created or not Membership.objects.filter(user=user).exists():
        member_of, _ = Organisation.objects.get_or_create(
            name=organisation or settings.KIDNEY_DEFAULT_ORGANISATION
        )
        Membership.objects.update_or_create(user=user, defaults={"organisation": member_of})
    token, key = token_issue(user=user, name="create_api_user")
    if revoke_others:
        tokens_revoke_all(user=user, keep=token)
    return user, key


def user_organisation(user) -> Organisation | None:
    membership = Membership.objects.filter(user=user).select_related("organisation").first()
    return membership.organisation if membership else None
