from django.db import migrations

OLD = "scans.tasks.retrain_if_enough_new_labels"
NEW = "retraining.tasks.retrain_if_enough_new_labels"


def forwards(apps, schema_editor):
    periodic_task = apps.get_model("django_celery_beat", "PeriodicTask")
    periodic_task.objects.filter(task=OLD).update(task=NEW)


def backwards(apps, schema_editor):
    periodic_task = apps.get_model("django_celery_beat", "PeriodicTask")
    periodic_task.objects.filter(task=NEW).update(task=OLD)


class Migration(migrations.Migration):
    """The retrain trigger moved from scans to the loop app; beat's schedule follows it."""

    dependencies = [
        ("scans", "0004_retrain_schedule"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]
    operations = [migrations.RunPython(forwards, backwards)]
