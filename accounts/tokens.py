"""API tokens that expire and can be revoked: issue, authenticate, revoke.

Clients send `Authorization: Token <key>`, as with DRF's TokenAuthentication, so existing
clients keep working; the key itself is never stored, only its digest.
"""

import hashlib
import secrets
from datetime import timedelta

from django.conf import settings
from django.utils import timezone
from rest_framework import exceptions
from rest_framework.authentication import BaseAuthentication, get_authorization_header

from accounts.models import ApiToken

KEYWORD = "Token"
ASK_FOR_A_NEW_ONE = (
    "Ask for a new one (POST /api/tokens/ while logged in, or an administrator's create_api_user)."
)
# Writing last_used on every request would make each read a write; this often is enough.
LAST_USED_RESOLUTION = timedelta(minutes=5)


def key_digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def token_issue(*, user, name: str = "") -> tuple[ApiToken, str]:
    """A new token for the user, valid for KIDNEY_TOKEN_DAYS: the token and its key, which is
    shown this once."""
    key = secrets.token_hex(20)
    token = ApiToken.objects.create(
        user=user,
        name=name,
        digest=key_digest(key),
        prefix=key[:8],
        expires=timezone.now() + timedelta(days=settings.KIDNEY_TOKEN_DAYS),
    )
    return token, key


def token_revoke(token: ApiToken) -> None:
    if token.revoked is None:
        token.revoked = timezone.now()
        token.save(update_fields=["revoked"])


def tokens_revoke_all(*, user, keep: ApiToken | None = None) -> int:
    live = ApiToken.objects.filter(user=user, revoked__isnull=True)
    if keep is not None:
        live = live.exclude(pk=keep.pk)
    return live.update(revoked=timezone.now())


def token_status(token: ApiToken) -> str:
    if token.revoked is not None:
        return "revoked"
    return "expired" if token.expires <= timezone.now() else "active"


def token_authenticate(key: str):
    """(user, token) for a live key; AuthenticationFailed saying why otherwise."""
    token = ApiToken.objects.select_related("user").filter(digest=key_digest(key)).first()
    if token is None:
        raise exceptions.AuthenticationFailed("Invalid token.")
    if token.revoked is not None:
        raise exceptions.AuthenticationFailed(f"This token was revoked. {ASK_FOR_A_NEW_ONE}")
    now = timezone.now()
    if token.expires <= now:
        raise exceptions.AuthenticationFailed(
            f"This token expired on {token.expires:%Y-%m-%d %H:%M} UTC. {ASK_FOR_A_NEW_ONE}"
        )
    if not token.user.is_active:
        raise exceptions.AuthenticationFailed("This user is inactive.")
    if token.last_used is None or now - token.last_used > LAST_USED_RESOLUTION:
        ApiToken.objects.filter(pk=token.pk).update(last_used=now)
    return token.user, token


class ExpiringTokenAuthentication(BaseAuthentication):
    """`Authorization: Token <key>`; 401 with the reason for an expired or revoked key."""

    def authenticate(self, request):
        parts = get_authorization_header(request).split()
        if not parts or parts[0].lower() != KEYWORD.lower().encode():
            return None
        if len(parts) != 2:
            raise exceptions.AuthenticationFailed(
                "Invalid token header: send 'Authorization: Token <key>'."
            )
        try:
            key = parts[1].decode()
        except UnicodeError:
            raise exceptions.AuthenticationFailed("Invalid token header.") from None
        return token_authenticate(key)

    def authenticate_header(self, request) -> str:
        return KEYWORD
