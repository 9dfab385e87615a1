"""The retrain trigger: confirmed labels become a training manifest. The evaluation set is
frozen from them the first time it is needed, and never trained on."""

from django.conf import settings
from django.db.models import QuerySet

from ml_core.datasets import LabelledImage, block_split
from ml_core.training import TrainingConfig
from scans.models import Scan
from training.models import TrainingRun
from training.selectors import (
    active_training_run,
    current_evaluation_set,
    evaluation_set_entries,
    last_training_run,
    serving_model_version,
)
from training.services import evaluation_set_freeze, training_run_create


def confirmed_scans(classes: list[str] | None = None) -> QuerySet[Scan]:
    scans = Scan.objects.exclude(confirmed_label="")
    return scans.filter(confirmed_label__in=classes) if classes else scans


def confirmed_label_entries(classes: list[str]) -> list[LabelledImage]:
    """Confirmed scans as a manifest; upload order stands for acquisition order, and a DICOM
    study reference keeps the slices of one study on one side of a split."""
    scans = confirmed_scans(classes).order_by("created", "id")
    return [
        LabelledImage(
            path=scan.file.path,
            label=scan.confirmed_label,
            order=order,
            group=scan.study_reference,
            sha256=scan.sha256,
        )
        for order, scan in enumerate(scans.iterator())
    ]


def label_training_parameters() -> dict:
    """Retraining on new labels: a new head on the serving model's base, with cached
    features, so that it costs little; from scratch when nothing serves yet."""
    serving = serving_model_version()
    if serving is None:
        return TrainingConfig(classes=tuple(settings.KIDNEY_CLASSES)).to_dict()
    config = TrainingConfig(
        classes=tuple(serving.classes),
        input_size=serving.input_size,
        normalisation=serving.preprocessing_config.normalisation,
        window_width=serving.preprocessing_config.window_width,
        window_level=serving.preprocessing_config.window_level,
        mode="head",
        learning_rate=1e-3,
        epochs=60,
        patience=10,
    )
    return {**config.to_dict(), "warm_start_from": serving.version}


def training_run_request(
    *,
    parameters: dict | None = None,
    trigger: str,
    requested_by=None,
    enqueue: bool = True,
) -> TrainingRun:
    """Start a training run on every confirmed label outside the evaluation set."""
    parameters = parameters or label_training_parameters()
    entries = confirmed_label_entries(list(parameters.get("classes", settings.KIDNEY_CLASSES)))
    if not entries:
        raise ValueError("There are no confirmed labels to train on.")
    evaluation_set = current_evaluation_set()
    if evaluation_set is None:
        _, held_out = block_split(
            entries, fraction=settings.KIDNEY_EVALUATION_FRACTION, gap=settings.KIDNEY_SPLIT_GAP
        )
        evaluation_set = evaluation_set_freeze(
            entries=held_out, source="confirmed labels", actor=requested_by
        )
    evaluation_hashes = {entry.sha256 for entry in evaluation_set_entries(evaluation_set)}
    training_entries = [entry for entry in entries if entry.sha256 not in evaluation_hashes]
    return training_run_create(
        entries=training_entries,
        parameters=parameters,
        data_source=f"{len(training_entries)} confirmed labels",
        trigger=trigger,
        requested_by=requested_by,
        enqueue=enqueue,
    )


def new_confirmed_labels_count() -> int:
    last = last_training_run()
    scans = confirmed_scans()
    return scans.filter(confirmed_at__gt=last.created).count() if last else scans.count()


def retrain_if_enough_new_labels() -> TrainingRun | None:
    """celery beat's retrain check: a run once enough labels arrived since the last run."""
    if active_training_run() is not None:
        return None
    if new_confirmed_labels_count() < settings.KIDNEY_RETRAIN_MIN_NEW_LABELS:
        return None
    return training_run_request(trigger=TrainingRun.Trigger.SCHEDULE)
