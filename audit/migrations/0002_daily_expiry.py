from django.db import migrations

NAME = "Forget access events older than the retention time"
TASK = "audit.tasks.expire_access_events"


def create_schedule(apps, schema_editor):
    interval_model = apps.get_model("django_celery_beat", "IntervalSchedule")
    periodic_task_model = apps.get_model("django_celery_beat", "PeriodicTask")
    interval, _ = interval_model.objects.get_or_create(every=1, period="days")
    periodic_task_model.objects.get_or_create(
        name=NAME, defaults={"task": TASK, "interval": interval, "queue": "default"}
    )


def delete_schedule(apps, schema_editor):
    apps.get_model("django_celery_beat", "PeriodicTask").objects.filter(task=TASK).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("audit", "0001_initial"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]
    operations = [migrations.RunPython(create_schedule, delete_schedule)]
