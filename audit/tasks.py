from celery import shared_task

from audit import services


@shared_task
def expire_access_events() -> int:
    """Periodic (celery beat, daily): forget reads older than KIDNEY_AUDIT_RETENTION_DAYS."""
    return services.access_events_expire()
