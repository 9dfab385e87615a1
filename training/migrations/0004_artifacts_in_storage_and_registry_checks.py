from pathlib import Path

from django.conf import settings
from django.core.files import File
from django.core.files.storage import default_storage
from django.db import migrations

SCHEDULES = [
    # (name, task, seconds)
    ("MLflow champion alias follows the serving version", "training.tasks.reconcile_champion", 60),
    ("Re-send a training run whose message was lost", "training.tasks.requeue_stale_training_runs", 300),
]


def artifacts_into_storage(apps, schema_editor):
    """Versions saved before artifacts went through the storage API lived in DATA_DIR/models."""
    model_version = apps.get_model("training", "ModelVersion")
    old_folder = Path(settings.DATA_DIR) / "models"
    for version in model_version.objects.exclude(artifact__startswith="models/"):
        old = old_folder / version.artifact
        if not old.exists():
            continue
        with open(old, "rb") as saved:
            version.artifact = default_storage.save(f"models/{version.artifact}", File(saved))
        version.save(update_fields=["artifact"])


def create_schedules(apps, schema_editor):
    interval_model = apps.get_model("django_celery_beat", "IntervalSchedule")
    periodic_task_model = apps.get_model("django_celery_beat", "PeriodicTask")
    for name, task, seconds in SCHEDULES:
        interval, _ = interval_model.objects.get_or_create(every=seconds, period="seconds")
        periodic_task_model.objects.get_or_create(
            name=name, defaults={"task": task, "interval": interval, "queue": "default"}
        )


def delete_schedules(apps, schema_editor):
    periodic_task_model = apps.get_model("django_celery_beat", "PeriodicTask")
    periodic_task_model.objects.filter(task__in=[task for _, task, _ in SCHEDULES]).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("training", "0003_trainingrun_retry_of_alter_modelversion_artifact_and_more"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]
    operations = [
        migrations.RunPython(artifacts_into_storage, migrations.RunPython.noop),
        migrations.RunPython(create_schedules, delete_schedules),
    ]
