from datetime import timedelta

from celery import shared_task
from django.conf import settings
from django.utils import timezone

from training import runs, services


@shared_task(acks_late=True, reject_on_worker_lost=True)
def run_training(run_id: int) -> str:
    """Execute a queued training run (idempotent: a run no longer queued is left alone)."""
    return runs.training_run_execute(run_id=run_id).status


@shared_task
def reconcile_champion() -> str:
    """Periodic (celery beat): MLflow's `champion` alias follows the serving version."""
    return services.champion_reconcile()


@shared_task
def requeue_stale_training_runs() -> int:
    """Periodic (celery beat): send again a queued run whose message was lost."""
    queued_before = timezone.now() - timedelta(seconds=settings.KIDNEY_REQUEUE_QUEUED_AFTER_SECONDS)
    return len(runs.training_runs_requeue_stale(queued_before=queued_before))
