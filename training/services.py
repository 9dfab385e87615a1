import uuid

from django.conf import settings
from django.db import transaction
from django.db.models import Max

from ml_core.training import TrainedClassifier
from training.models import ModelVersion


def model_version_register(
    *, trained: TrainedClassifier, description: str, serve: bool
) -> ModelVersion:
    """Save the trained model and record it as a new version (serving it, if asked)."""
    models_dir = settings.KIDNEY_MODELS_DIR
    models_dir.mkdir(parents=True, exist_ok=True)
    artifact = f"kidney-ct-{uuid.uuid4().hex}.keras"
    trained.model.save(models_dir / artifact)
    preprocessing = trained.preprocessing.to_dict()
    input_size = preprocessing.pop("input_size")
    try:
        with transaction.atomic():
            latest = ModelVersion.objects.aggregate(Max("version"))
            model_version = ModelVersion.objects.create(
                version=(latest["version__max"] or 0) + 1,
                classes=trained.classes,
                input_size=input_size,
                preprocessing=preprocessing,
                threshold=trained.threshold,
                metrics={"validation": trained.validation},
                artifact=artifact,
                description=description,
            )
            if serve:
                model_version_serve(model_version=model_version)
    except BaseException:
        (models_dir / artifact).unlink(missing_ok=True)
        raise
    return model_version


@transaction.atomic
def model_version_serve(*, model_version: ModelVersion) -> None:
    """Make this version the serving one and retire the one it replaces."""
    ModelVersion.objects.filter(status=ModelVersion.Status.SERVING).exclude(
        pk=model_version.pk
    ).update(status=ModelVersion.Status.RETIRED)
    model_version.status = ModelVersion.Status.SERVING
    model_version.save(update_fields=["status"])
