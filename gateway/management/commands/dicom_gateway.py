import logging
import signal
import threading
import time
from datetime import timedelta

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import connections
from django.utils import timezone

from gateway import network, services
from scans.services import studies_complete

logger = logging.getLogger(__name__)


def gateway_tick() -> None:
    """One round of the gateway's own work: complete quiet studies, fill the outbox, send
    what is due, erase identities past their retention."""
    quiet = timedelta(seconds=settings.KIDNEY_DICOM_STUDY_QUIET_SECONDS)
    for study_id in studies_complete(quiet_before=timezone.now() - quiet):
        logger.info("Study %s complete: queued for classification", study_id)
    services.deliveries_create(destination=settings.KIDNEY_DICOM_DESTINATION)
    for delivery in services.deliveries_due():
        services.delivery_attempt(delivery, network.send)
    services.identities_erase()


class Command(BaseCommand):
    help = (
        "Run the DICOM gateway: the storage listener (KIDNEY_DICOM_HOST:KIDNEY_DICOM_PORT, AE "
        "KIDNEY_DICOM_AE_TITLE), study completion after the quiet period, and the outbox "
        "sending results to KIDNEY_DICOM_DESTINATION. SIGTERM or Ctrl-C stops it."
    )

    def handle(self, *args, **options):
        if not settings.KIDNEY_DICOM_PORT:
            raise CommandError("KIDNEY_DICOM_PORT is 0: the DICOM listener is turned off.")
        if settings.KIDNEY_DICOM_DESTINATION:
            try:
                network.parse_destination(settings.KIDNEY_DICOM_DESTINATION)
            except ValueError as error:
                raise CommandError(f"KIDNEY_DICOM_DESTINATION: {error}") from None
        try:
            server = network.listener_start()
        except (network.ListenerMisconfigured, OSError) as error:
            raise CommandError(str(error)) from None
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        signal.signal(signal.SIGINT, lambda *_: stop.set())
        callers = ", ".join(services.allowed_callers()) or "any caller on loopback"
        self.stdout.write(
            f"DICOM listener {settings.KIDNEY_DICOM_AE_TITLE}@{settings.KIDNEY_DICOM_HOST}:"
            f"{settings.KIDNEY_DICOM_PORT} (callers: {callers}); results to "
            f"{settings.KIDNEY_DICOM_DESTINATION or 'nowhere (KIDNEY_DICOM_DESTINATION unset)'}"
        )
        self.stdout.flush()
        try:
            while not stop.is_set():
                started = time.monotonic()
                try:
                    gateway_tick()
                except Exception:
                    logger.exception("Gateway round failed; trying again")
                    connections.close_all()
                elapsed = time.monotonic() - started
                stop.wait(max(0.0, settings.KIDNEY_DICOM_POLL_SECONDS - elapsed))
        finally:
            server.shutdown()
            connections.close_all()
