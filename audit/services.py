"""Record reads of patient data; forget them after the retention time."""

import logging
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from audit.models import AccessEvent
from kidneyproject.client import client_address

logger = logging.getLogger(__name__)


def access_record(request, *, kind: str, scan_ids) -> None:
    """One row for this read. A failure to write it is logged and never fails the read."""
    try:
        with transaction.atomic():
            AccessEvent.objects.create(
                user=request.user if request.user and request.user.is_authenticated else None,
                username=getattr(request.user, "username", "") or "",
                kind=kind,
                scan_ids="\n".join(str(scan_id) for scan_id in scan_ids),
                path=request.get_full_path()[:500],
                client_address=client_address(request),
            )
    except Exception:
        logger.exception("Could not record a %s read of %s in the access audit", kind, scan_ids)


def access_events_expire() -> int:
    """Delete the events older than KIDNEY_AUDIT_RETENTION_DAYS; how many."""
    cutoff = timezone.now() - timedelta(days=settings.KIDNEY_AUDIT_RETENTION_DAYS)
    deleted, _ = AccessEvent.objects.filter(at__lt=cutoff).delete()
    return deleted
