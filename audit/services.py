"""Record reads of patient data; forget them after the retention time.

A read is recorded after its response has been delivered (Django's `request_finished`, sent
when the server closes the response), so writing the audit never delays the read it records,
and a failure to write it is logged and never fails the read.
"""

import logging
from contextvars import ContextVar
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from audit.models import AccessEvent
from kidneyproject.client import client_address

logger = logging.getLogger(__name__)

# The reads of the request being served, written once its response is delivered.
_pending: ContextVar[list[AccessEvent] | None] = ContextVar("audit_pending", default=None)


def access_record(request, *, kind: str, scan_ids) -> None:
    """One row for this read, written when the response has been delivered."""
    event = AccessEvent(
        user=request.user if request.user and request.user.is_authenticated else None,
        username=getattr(request.user, "username", "") or "",
        kind=kind,
        scan_ids="\n".join(str(scan_id) for scan_id in scan_ids),
        path=request.get_full_path()[:500],
        client_address=client_address(request),
    )
    pending = _pending.get()
    if pending is None:
        _pending.set(pending := [])
    pending.append(event)


def access_events_write(events: list[AccessEvent]) -> None:
    """Write these events in one transaction; a failure is logged, never raised."""
    try:
        with transaction.atomic():
            AccessEvent.objects.bulk_create(events)
    except Exception:
        logger.exception("Could not record %d reads in the access audit", len(events))


def write_pending_reads(**signal_arguments) -> None:
    """request_finished: write the reads the delivered response recorded."""
    pending = _pending.get()
    if pending:
        _pending.set(None)
        access_events_write(pending)


def forget_undelivered_reads(**signal_arguments) -> None:
    """request_started: a new request starts with nothing pending. Reads left over belong to
    a response its server never closed (WSGI servers always close, even when the client
    disconnects): say so rather than attribute them to this request."""
    pending = _pending.get()
    if pending:
        logger.warning(
            "%d reads were not recorded in the access audit: their response was never closed",
            len(pending),
        )
    _pending.set(None)


def access_events_expire() -> int:
    """Delete the events older than KIDNEY_AUDIT_RETENTION_DAYS; how many."""
    cutoff = timezone.now() - timedelta(days=settings.KIDNEY_AUDIT_RETENTION_DAYS)
    deleted, _ = AccessEvent.objects.filter(at__lt=cutoff).delete()
    return deleted
