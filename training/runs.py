"""Training runs: a manifest and parameters in, a registered candidate (gated) out.

Each step does one thing, so each failure has one place: prepare (manifest, split, initial
model), fit (MLflow records every epoch), register (MLflow registry, storage, database: all
or nothing), evaluate (the frozen evaluation set), then the gate.
"""

import logging
from dataclasses import dataclass

import numpy as np
from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from ml_core.datasets import LabelledImage, block_split, class_counts
from ml_core.training import BatchCallback, EpochCallback, TrainedClassifier, TrainingConfig
from training import files, tracking
from training.dispatch import training_run_enqueue
from training.evaluation import PromotionRefused, evaluation_set_extend, model_version_evaluate
from training.models import ModelVersion, TrainingRun
from training.selectors import (
    current_evaluation_set,
    evaluation_set_entries,
    training_config_from_parameters,
)
from training.services import (
    model_version_discard,
    model_version_promote,
    model_version_register,
)
from training.twins import int8_twin_build

logger = logging.getLogger(__name__)


class TrainingRunActive(Exception):
    def __init__(self, run: TrainingRun):
        super().__init__(f"Training run {run.pk} is already {run.status}; one runs at a time.")
        self.run = run


def training_run_create(
    *,
    entries: list[LabelledImage],
    parameters: dict,
    data_source: str,
    trigger: str,
    requested_by=None,
    enqueue: bool = True,
    retry_of: TrainingRun | None = None,
    recent_evaluation_set=None,
    evaluation_entries: list[LabelledImage] = (),
) -> TrainingRun:
    """Record a queued run on this manifest; refuse while another run is queued or running.
    evaluation_entries (the block planned for the evaluation set) are frozen into it once the
    run has a candidate to judge: a run that fails before that freezes nothing.

    With enqueue, the `training` queue runs it once the row is committed.
    """
    training_config_from_parameters(parameters)  # refuse bad parameters before queueing
    if not entries:
        raise ValueError("There are no labelled images to train on.")
    digest = files.manifest_store(entries)
    evaluation_digest = files.manifest_store(list(evaluation_entries)) if evaluation_entries else ""
    try:
        with transaction.atomic():
            run = TrainingRun.objects.create(
                trigger=trigger,
                requested_by=requested_by,
                parameters=parameters,
                data_source=data_source[:300],
                manifest_digest=digest,
                manifest_size=len(entries),
                class_counts=class_counts(entries),
                retry_of=retry_of,
                recent_evaluation_set=recent_evaluation_set,
                evaluation_manifest_digest=evaluation_digest,
            )
            if enqueue:
                training_run_enqueue(run.pk)
    except IntegrityError:
        raise TrainingRunActive(TrainingRun.objects.get(active=True)) from None
    return run


def training_run_retry(*, run: TrainingRun, requested_by=None, enqueue: bool = True) -> TrainingRun:
    """A new run on a failed run's manifest and parameters."""
    if run.status != TrainingRun.Status.FAILED:
        raise ValueError(f"Training run {run.pk} is {run.status}; only a failed run is retried.")
    return training_run_create(
        entries=files.manifest_load(run.manifest_digest),
        parameters=run.parameters,
        data_source=run.data_source,
        trigger=run.trigger,
        requested_by=requested_by,
        enqueue=enqueue,
        retry_of=run,
        recent_evaluation_set=run.recent_evaluation_set,
        evaluation_entries=_planned_evaluation_entries(run),
    )


def _planned_evaluation_entries(run: TrainingRun) -> list[LabelledImage]:
    if not run.evaluation_manifest_digest:
        return []
    return files.manifest_load(run.evaluation_manifest_digest)


def training_runs_requeue_stale(*, queued_before) -> list[int]:
    """Send again the queued run whose message may be lost (the broker was down)."""
    stale = TrainingRun.objects.filter(status=TrainingRun.Status.QUEUED, created__lt=queued_before)
    run_ids = list(stale.values_list("pk", flat=True))
    for run_id in run_ids:
        training_run_enqueue(run_id)
    return run_ids


@dataclass(frozen=True)
class Progress:
    """Optional observers of a run: after each epoch, and within one (a terminal's bar)."""

    on_epoch_end: EpochCallback | None = None
    on_batch_end: BatchCallback | None = None


def training_run_execute(*, run_id: int, progress: Progress = Progress()) -> TrainingRun:
    """Train, register a candidate, evaluate it, then try the promotion gate. A run that is
    not queued any more (already executed, or being executed) is left as it is."""
    claimed = TrainingRun.objects.filter(pk=run_id, status=TrainingRun.Status.QUEUED).update(
        status=TrainingRun.Status.RUNNING, started=timezone.now()
    )
    run = TrainingRun.objects.get(pk=run_id)
    if not claimed:
        return run
    try:
        with tracking.TrainingTracker(f"training-run-{run.pk}") as tracker:
            TrainingRun.objects.filter(pk=run.pk).update(mlflow_run_id=tracker.run_id)
            config, train_entries, validation_entries, initial_model = _prepare(run, tracker)
            trained = _fit(
                run, tracker, config, train_entries, validation_entries, initial_model, progress
            )
            _threshold_for_recent_studies(run, config, trained, tracker)
            candidate = model_version_register(
                trained=trained,
                description=f"Training run {run.pk} on {run.data_source}",
                tracker=tracker,
            )
            try:
                _evaluate(run, candidate, trained, tracker)
            except BaseException:
                model_version_discard(candidate)
                raise
    except Exception as error:
        logger.exception("Training run %s failed", run.pk)
        TrainingRun.objects.filter(pk=run.pk).update(
            status=TrainingRun.Status.FAILED,
            active=None,
            error=f"{type(error).__name__}: {error}",
            finished=timezone.now(),
        )
        run.refresh_from_db()
        return run
    # The gate decides before the run ends, so whoever waits for the run sees its decision.
    _gate(run, candidate)
    TrainingRun.objects.filter(pk=run.pk).update(
        status=TrainingRun.Status.SUCCEEDED,
        active=None,
        progress=1.0,
        metrics=candidate.metrics,
        history=trained.history,
        model_version=candidate,
        finished=timezone.now(),
    )
    run.refresh_from_db()
    if settings.KIDNEY_INT8_TWINS:
        _build_twin(candidate)
    return run


def _build_twin(candidate: ModelVersion) -> None:
    """The candidate's int8 twin, once the run has ended (nobody waits for it). Without one
    that passed, the version serves on Keras."""
    try:
        int8_twin_build(candidate)
    except Exception as error:
        logger.exception("The int8 twin of %s could not be built", candidate.label)
        ModelVersion.objects.filter(pk=candidate.pk).update(
            int8_gate={"passed": False, "detail": f"Not built: {type(error).__name__}: {error}"}
        )


def _prepare(run: TrainingRun, tracker: tracking.TrainingTracker):
    """The configuration, the training and validation blocks (readable on this machine) and
    the model to start from."""
    config = training_config_from_parameters(run.parameters)
    entries = files.local_entries(files.manifest_load(run.manifest_digest))
    train_entries, validation_entries = block_split(
        entries, fraction=settings.KIDNEY_VALIDATION_FRACTION, gap=settings.KIDNEY_SPLIT_GAP
    )
    for name, part in (("training", train_entries), ("validation", validation_entries)):
        if {entry.label for entry in part} != set(config.classes):
            raise ValueError(
                f"Too few labelled images: after the validation split (the last "
                f"{settings.KIDNEY_VALIDATION_FRACTION:.0%} of each class, a gap of "
                f"{settings.KIDNEY_SPLIT_GAP}) the {name} block has {class_counts(part)}; "
                f"every class of {list(config.classes)} needs images there."
            )
    initial_model = None
    warm_start = run.parameters.get("warm_start_from")
    if warm_start:
        source = ModelVersion.objects.get(version=warm_start)
        initial_model = files.model_load(source.artifact)
    tracker.log_parameters(
        {
            **run.parameters,
            "data_source": run.data_source,
            "manifest_digest": run.manifest_digest,
            "train_images": len(train_entries),
            "validation_images": len(validation_entries),
        }
    )
    return config, train_entries, validation_entries, initial_model


def _fit(
    run, tracker, config: TrainingConfig, train_entries, validation_entries, initial_model,
    progress: Progress,
) -> TrainedClassifier:  # fmt: skip
    """Fit, recording every epoch in MLflow and on the run (its history too, as it goes)."""
    from ml_core import plots
    from ml_core.training import train

    history = []

    def on_epoch_end(epoch: int, row: dict) -> None:
        tracker.log_epoch(epoch, row)
        history.append(row)
        TrainingRun.objects.filter(pk=run.pk).update(
            epoch=epoch, progress=min(0.99, epoch / config.epochs), history=history
        )
        logger.info("Training run %s: epoch %s %s", run.pk, epoch, row)
        if progress.on_epoch_end is not None:
            progress.on_epoch_end(epoch, row)

    trained = train(
        config,
        train_entries,
        validation_entries,
        initial_model=initial_model,
        feature_cache_dir=settings.KIDNEY_FEATURE_CACHE_DIR,
        on_epoch_end=on_epoch_end,
        on_batch_end=progress.on_batch_end,
    )
    tracker.log_report("validation", trained.validation)
    tracker.log_figure_png(
        "validation_roc.png",
        plots.roc_png(trained.validation_positive, trained.validation_scores, trained.validation),
    )
    tracker.log_figure_png("validation_confusion.png", plots.confusion_png(trained.validation))
    return trained


def _threshold_for_recent_studies(
    run: TrainingRun, config: TrainingConfig, trained: TrainedClassifier, tracker
) -> None:
    """The threshold that reaches the target sensitivity on the validation block and the
    run's recent block together. The validation block sits next to the training data; the
    recent block holds the newest studies, the closest to the next patients, whose stones the
    replays showed scoring lower (docs/replays.md, replays H and I); one block alone is a
    few studies, and a threshold chosen on one hard block flags nearly every normal scan of
    the next. The recent block still judges the candidate's ranking (ROC AUC,
    threshold-free) against the serving version."""
    from ml_core.decision import NEGATIVE_CLASS, abnormal_scores, choose_threshold
    from ml_core.training import predict_through_cache

    if run.recent_evaluation_set is None:
        return
    entries = files.local_entries(
        [e for e in evaluation_set_entries(run.recent_evaluation_set) if e.label in config.classes]
    )
    # Through the feature cache, so that the gate's evaluation on the same block reads them.
    probabilities = predict_through_cache(
        trained.model, entries, trained.preprocessing, settings.KIDNEY_FEATURE_CACHE_DIR
    )
    is_positive = np.concatenate(
        [trained.validation_positive, [entry.label != NEGATIVE_CLASS for entry in entries]]
    ).astype(bool)
    scores = np.concatenate(
        [trained.validation_scores, abnormal_scores(probabilities, trained.classes)]
    )
    thresholds = {
        "validation": trained.threshold,
        "validation_and_recent": choose_threshold(is_positive, scores, config.target_sensitivity),
    }
    trained.threshold = thresholds["validation_and_recent"]
    trained.validation["thresholds"] = thresholds
    tracker.log_metrics({f"threshold_{name}": value for name, value in thresholds.items()})


def _evaluate(run: TrainingRun, candidate: ModelVersion, trained: TrainedClassifier, tracker):
    """The candidate on the evaluation set, with the block the run planned for it frozen
    into it first (the set was not frozen, or short of its minimum, when the run was
    requested)."""
    evaluation_set = current_evaluation_set()
    planned = _planned_evaluation_entries(run)
    known = {entry["sha256"] for entry in evaluation_set.entries} if evaluation_set else set()
    if any(entry.sha256 not in known for entry in planned):
        evaluation_set = evaluation_set_extend(
            entries=planned,
            source=f"the last block of each class, planned by training run {run.pk}",
            actor=run.requested_by,
        )
    if evaluation_set is None:
        return
    report = model_version_evaluate(
        model_version=candidate, evaluation_set=evaluation_set, model=trained.model
    )
    tracker.log_report("evaluation", report)
    candidate.metrics = {**candidate.metrics, "evaluation": report}
    candidate.save(update_fields=["metrics"])


def _gate(run: TrainingRun, candidate: ModelVersion) -> None:
    """The run succeeds whatever the gate decides: the candidate stays registered."""
    try:
        log = model_version_promote(model_version=candidate, recent_set=run.recent_evaluation_set)
        logger.info("Training run %s: candidate %s %s", run.pk, candidate.label, log.decision)
    except PromotionRefused as refusal:
        logger.info("Training run %s: %s not promoted: %s", run.pk, candidate.label, refusal)
        candidate.metrics = {**candidate.metrics, "gate": {"passed": None, "detail": str(refusal)}}
        candidate.save(update_fields=["metrics"])
    except Exception:
        logger.exception("Training run %s: the promotion gate failed", run.pk)
