from celery import shared_task

from retraining import services


@shared_task
def retrain_if_enough_new_labels() -> int | None:
    """Periodic (celery beat): start a training run once enough new labels are confirmed."""
    run = services.retrain_if_enough_new_labels()
    return run.pk if run else None
