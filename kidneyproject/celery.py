"""The Celery app: three queues, routed by task module."""

import os

from celery import Celery
from kombu import Queue

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "kidneyproject.settings")

app = Celery("kidneyproject")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.conf.task_queues = [Queue("inference"), Queue("training"), Queue("default")]
app.conf.task_routes = {
    "scans.tasks.classify_scans": {"queue": "inference"},
    "scans.tasks.compute_heatmap": {"queue": "inference"},
    "training.tasks.*": {"queue": "training"},
}
app.autodiscover_tasks()
