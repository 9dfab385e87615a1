from pathlib import Path

from django.conf import settings

from training.models import ModelVersion


def serving_model_version() -> ModelVersion | None:
    return ModelVersion.objects.filter(status=ModelVersion.Status.SERVING).first()


def model_artifact_path(model_version: ModelVersion) -> Path:
    """Artifacts are stored relative to the models folder, so the data folder can move."""
    return Path(settings.KIDNEY_MODELS_DIR) / model_version.artifact
