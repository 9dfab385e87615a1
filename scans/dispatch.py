"""The one sender of inference messages. Services call these, never the task module, so
tasks import services and not the other way round.

The database, not the broker, is the record of what waits: if the broker is down the scans
stay queued and the periodic sweep sends them once it is back, so nothing fails for it.
"""

import logging

from celery import current_app
from django.conf import settings
from django.db import transaction
from kombu.exceptions import OperationalError as BrokerUnavailable

logger = logging.getLogger(__name__)

CLASSIFY_SCANS = "scans.tasks.classify_scans"
COMPUTE_HEATMAP = "scans.tasks.compute_heatmap"
CLASSIFY_STUDY = "scans.tasks.classify_study"


def inference_enqueue(scan_ids: list[str], *, countdown: float = 0) -> None:
    """Send scans to the inference queue, a batch a message, once the current transaction
    commits."""
    transaction.on_commit(lambda: _send_batches([str(scan_id) for scan_id in scan_ids], countdown))


def heatmap_enqueue(scan_id: str) -> None:
    transaction.on_commit(lambda: _send(COMPUTE_HEATMAP, [str(scan_id)], countdown=0))


def study_enqueue(study_id) -> None:
    """Send a complete study to the inference queue once the current transaction commits."""
    transaction.on_commit(lambda: _send(CLASSIFY_STUDY, [str(study_id)], countdown=0))


def _send_batches(scan_ids: list[str], countdown: float) -> None:
    batch = settings.KIDNEY_INFERENCE_BATCH_SIZE
    for start in range(0, len(scan_ids), batch):
        _send(CLASSIFY_SCANS, [scan_ids[start : start + batch]], countdown=countdown)


def _send(task: str, args: list, *, countdown: float) -> None:
    try:
        current_app.send_task(task, args=args, countdown=countdown)
    except BrokerUnavailable as error:
        logger.warning("Broker unreachable (%s); %s %s left to the sweep", error, task, args)
