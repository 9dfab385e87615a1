"""The one sender of training messages. Services call this, never the task module, so tasks
import services and not the other way round. The database records what waits: a run whose
message was lost (broker down) is sent again by the stale-run check."""

import logging

from celery import current_app
from django.db import transaction
from kombu.exceptions import OperationalError as BrokerUnavailable

logger = logging.getLogger(__name__)

RUN_TRAINING = "training.tasks.run_training"


def training_run_enqueue(run_id: int) -> None:
    """Send the run to the `training` queue once the current transaction commits."""
    transaction.on_commit(lambda: _send(run_id))


def _send(run_id: int) -> None:
    try:
        current_app.send_task(RUN_TRAINING, args=[run_id])
    except BrokerUnavailable as error:
        logger.warning("Broker unreachable (%s); training run %s left to the check", error, run_id)
