from django.conf import settings


def session_idle(request) -> dict:
    """The review page warns before automatic logoff: it needs the idle time."""
    return {"session_idle_seconds": settings.SESSION_COOKIE_AGE}
