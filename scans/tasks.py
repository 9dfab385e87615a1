from datetime import timedelta

from celery import shared_task
from django.conf import settings
from django.utils import timezone

from scans import inference

MAX_RETRIES = 5


@shared_task(bind=True, acks_late=True, reject_on_worker_lost=True, max_retries=MAX_RETRIES)
def classify_scans(self, scan_ids: list[str]) -> int:
    """Classify these scans (and other queued ones, up to a batch). Idempotent."""
    task_id = self.request.id
    try:
        return inference.scans_classify(scan_ids=scan_ids, task_id=task_id)
    except Exception as error:
        if self.request.retries >= MAX_RETRIES:
            inference.scans_fail(
                scan_ids=scan_ids, task_id=task_id, reason=f"Inference failed: {error}"
            )
            raise
        inference.scans_release(task_id=task_id)
        raise self.retry(exc=error, countdown=2 ** (self.request.retries + 1)) from error


@shared_task(acks_late=True)
def requeue_stale_scans() -> int:
    """Periodic sweep (celery beat): send scans and studies whose message was lost back to
    inference."""
    now = timezone.now()
    stale = {
        "queued_before": now - timedelta(seconds=settings.KIDNEY_REQUEUE_QUEUED_AFTER_SECONDS),
        "claimed_before": now - timedelta(seconds=settings.KIDNEY_CLAIM_TIMEOUT_SECONDS),
    }
    return inference.scans_requeue_stale(**stale) + inference.studies_requeue_stale(**stale)


@shared_task(bind=True, acks_late=True, reject_on_worker_lost=True, max_retries=MAX_RETRIES)
def classify_study(self, study_id: str) -> bool:
    """Classify a complete study and give it its verdict. Idempotent."""
    task_id = self.request.id
    try:
        return inference.study_classify(study_id=study_id, task_id=task_id)
    except Exception as error:
        if self.request.retries >= MAX_RETRIES:
            inference.study_fail(
                study_id=study_id, task_id=task_id, reason=f"Classification failed: {error}"
            )
            raise
        inference.study_release(study_id=study_id, task_id=task_id, reason=str(error))
        raise self.retry(exc=error, countdown=2 ** (self.request.retries + 1)) from error


@shared_task(acks_late=True, reject_on_worker_lost=True)
def compute_heatmap(scan_id: str) -> None:
    """One prediction's evidence map: asked for, or queued by KIDNEY_EVIDENCE_MAPS."""
    inference.heatmap_compute(scan_id=scan_id)
