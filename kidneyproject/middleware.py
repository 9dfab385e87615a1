"""Answers for when a backing service is down: a JSON 503 instead of an HTML 500."""

import logging

from django.db import InterfaceError, OperationalError, connections
from django.http import JsonResponse

logger = logging.getLogger(__name__)

RETRY_AFTER_SECONDS = 5


class DatabaseUnavailableMiddleware:
    """A view that finds the database unreachable gets 503 with a JSON error and a
    Retry-After header. Its connection is closed, so the next request connects afresh and the
    service recovers by itself once the database is back."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        return self.get_response(request)

    def process_exception(self, request, exception):
        if not isinstance(exception, (OperationalError, InterfaceError)):
            return None
        logger.error("Database unavailable: %s", type(exception).__name__)
        for connection in connections.all(initialized_only=True):
            connection.close_if_unusable_or_obsolete()
        response = JsonResponse(
            {"detail": "The database is unavailable; try again shortly."}, status=503
        )
        response["Retry-After"] = str(RETRY_AFTER_SECONDS)
        return response
