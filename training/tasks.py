from celery import shared_task

from training import services


@shared_task(acks_late=True, reject_on_worker_lost=True)
def run_training(run_id: int) -> str:
    """Execute a queued training run (idempotent: a run no longer queued is left alone)."""
    return services.training_run_execute(run_id=run_id).status
