from django.db import migrations

TASK = "scans.tasks.retrain_if_enough_new_labels"


def create_schedule(apps, schema_editor):
    interval_model = apps.get_model("django_celery_beat", "IntervalSchedule")
    periodic_task_model = apps.get_model("django_celery_beat", "PeriodicTask")
    every_ten_minutes, _ = interval_model.objects.get_or_create(every=10, period="minutes")
    periodic_task_model.objects.get_or_create(
        name="Retrain when enough new labels are confirmed",
        defaults={"task": TASK, "interval": every_ten_minutes, "queue": "default"},
    )


def delete_schedule(apps, schema_editor):
    apps.get_model("django_celery_beat", "PeriodicTask").objects.filter(task=TASK).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("scans", "0003_scan_confirmed_at_scan_confirmed_by_and_more"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]
    operations = [migrations.RunPython(create_schedule, delete_schedule)]
