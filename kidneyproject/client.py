"""The client's network address, the same for login throttling and the access audit."""

from django.conf import settings


def client_address(request) -> str | None:
    """REMOTE_ADDR, or behind KIDNEY_TRUSTED_PROXY_COUNT proxies the X-Forwarded-For entry
    the outermost trusted proxy saw (entries further left are the client's own claims)."""
    proxies = settings.KIDNEY_TRUSTED_PROXY_COUNT
    forwarded = [
        part.strip()
        for part in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",")
        if part.strip()
    ]
    if proxies and len(forwarded) >= proxies:
        return forwarded[-proxies]
    return request.META.get("REMOTE_ADDR")
