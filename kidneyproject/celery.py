"""The Celery app: three queues; inference and training runs have their own, everything
else (beat's checks) goes to `default`."""

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
    "training.tasks.run_training": {"queue": "training"},
}
app.autodiscover_tasks()
