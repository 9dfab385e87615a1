from django.conf import settings
from django.db import migrations

from ml_core.shipped import shipped_description


def shipped_study_decision(apps, schema_editor):
    """A shipped model served before versions had a study threshold gets the one its
    description now carries, if it is that same model (the same slice threshold)."""
    description = shipped_description(settings.KIDNEY_SHIPPED_MODEL_DIR) or {}
    study = description.get("study")
    if not study:
        return
    model_version = apps.get_model("training", "ModelVersion")
    model_version.objects.filter(
        model_card="/model-card/",
        study_threshold__isnull=True,
        threshold=description["threshold"],
    ).update(study_rule=study["rule"], study_threshold=study["threshold"])


class Migration(migrations.Migration):
    dependencies = [("training", "0008_study_rule")]
    operations = [migrations.RunPython(shipped_study_decision, migrations.RunPython.noop)]
