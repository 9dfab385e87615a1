from ml_core.augmentation import Augmentation
from ml_core.datasets import LabelledImage
from ml_core.training import TrainingConfig
from training.models import EvaluationSet, ModelVersion, PromotionLog, TrainingRun

# Run parameters that are not part of ml_core's TrainingConfig.
RUN_OPTIONS = ("warm_start_from",)


def serving_model_version() -> ModelVersion | None:
    return ModelVersion.objects.filter(status=ModelVersion.Status.SERVING).first()


def previous_serving_version(model_version: ModelVersion) -> ModelVersion | None:
    """The version this one replaced when it last started serving."""
    log = PromotionLog.objects.filter(
        to_version=model_version, decision__in=PromotionLog.SERVING_DECISIONS
    ).first()
    return log.from_version if log else None


def current_evaluation_set() -> EvaluationSet | None:
    """The original evaluation set's current version."""
    return (
        EvaluationSet.objects.filter(kind=EvaluationSet.Kind.ORIGINAL).order_by("-version").first()
    )


def latest_recent_evaluation_set() -> EvaluationSet | None:
    return EvaluationSet.objects.filter(kind=EvaluationSet.Kind.RECENT).order_by("-version").first()


def evaluation_set_entries(evaluation_set: EvaluationSet) -> list[LabelledImage]:
    return [LabelledImage(**values) for values in evaluation_set.entries]


def active_training_run() -> TrainingRun | None:
    return TrainingRun.objects.filter(active=True).first()


def last_training_run() -> TrainingRun | None:
    return TrainingRun.objects.first()


def training_config_from_parameters(parameters: dict) -> TrainingConfig:
    """Rebuild ml_core's TrainingConfig from a run's stored parameters."""
    values = {key: value for key, value in parameters.items() if key not in RUN_OPTIONS}
    if "augmentation" in values:
        values["augmentation"] = Augmentation(**values["augmentation"])
    if "classes" in values:
        values["classes"] = tuple(values["classes"])
    return TrainingConfig(**values)
