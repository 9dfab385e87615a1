"""GET /healthz: is this instance able to serve? For load balancers and hospital IT."""

from celery import current_app
from django.db import DatabaseError, connection
from django.http import JsonResponse
from django.views.decorators.http import require_GET

from training.selectors import serving_model_version

BROKER_TIMEOUT_SECONDS = 2.0


@require_GET
def healthz(request):
    """200 when the database and the broker answer and a model version serves, else 503.
    Open to anonymous callers, so it says nothing but that."""
    checks = {"database": _database(), "broker": _broker()}
    checks["serving_model"] = _serving_model() if checks["database"]["ok"] else {"ok": False}
    healthy = all(check["ok"] for check in checks.values())
    return JsonResponse(
        {"status": "ok" if healthy else "unavailable", **checks}, status=200 if healthy else 503
    )


def _database() -> dict:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    except DatabaseError as error:
        connection.close_if_unusable_or_obsolete()
        return {"ok": False, "error": type(error).__name__}
    return {"ok": True}


def _broker() -> dict:
    try:
        with current_app.connection_for_write() as broker:
            broker.ensure_connection(
                max_retries=1, interval_start=0, timeout=BROKER_TIMEOUT_SECONDS
            )
    except Exception as error:  # any transport's connection error
        return {"ok": False, "error": type(error).__name__}
    return {"ok": True}


def _serving_model() -> dict:
    version = serving_model_version()
    return {"ok": version is not None, "version": version.version if version else None}
