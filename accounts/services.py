from django.contrib.auth import get_user_model
from django.db import transaction
from rest_framework.authtoken.models import Token

from accounts.roles import Role, role_group


@transaction.atomic
def api_user_upsert(*, username: str, role: Role) -> tuple[object, str]:
    """Create the user or update its role (one role at a time); return it and its API token."""
    user, created = get_user_model().objects.get_or_create(username=username)
    if created:
        user.set_unusable_password()
        user.save(update_fields=["password"])
    user.groups.remove(*user.groups.filter(name__in=[str(item) for item in Role]))
    user.groups.add(role_group(role))
    token, _ = Token.objects.get_or_create(user=user)
    return user, token.key
