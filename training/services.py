"""Model lifecycle: register versions, freeze the evaluation set, gate promotions, run training.

Nothing here knows where labelled images come from: a training run takes a manifest.
"""

import logging
import uuid

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Max
from django.utils import timezone

from ml_core.datasets import (
    LabelledImage,
    block_split,
    class_counts,
    manifest_digest,
    manifest_from_json,
    manifest_to_json,
)
from ml_core.training import EpochCallback, TrainedClassifier
from training import tracking
from training.models import (
    EvaluationSet,
    ModelEvaluation,
    ModelVersion,
    PromotionLog,
    TrainingRun,
)
from training.selectors import (
    current_evaluation_set,
    evaluation_set_entries,
    model_artifact_path,
    previous_serving_version,
    serving_model_version,
    training_config_from_parameters,
)

logger = logging.getLogger(__name__)


class TrainingRunActive(Exception):
    def __init__(self, run: TrainingRun):
        super().__init__(f"Training run {run.pk} is already {run.status}; one runs at a time.")
        self.run = run


class PromotionRefused(Exception):
    def __init__(self, message: str, log: PromotionLog | None = None):
        super().__init__(message)
        self.log = log


# Model versions ----------------------------------------------------------------------------


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
            latest = ModelVersion.objects.aggregate(Max("version"))["version__max"] or 0
            model_version = ModelVersion.objects.create(
                version=latest + 1,
                classes=trained.classes,
                input_size=input_size,
                preprocessing=preprocessing,
                threshold=trained.threshold,
                metrics={"validation": trained.validation},
                artifact=artifact,
                description=description,
            )
            if serve:
                _serve(model_version)
    except BaseException:
        (models_dir / artifact).unlink(missing_ok=True)
        raise
    return model_version


def _serve(model_version: ModelVersion) -> ModelVersion | None:
    """Make this version serve; retire and return the one it replaces."""
    replaced = serving_model_version()
    if replaced is not None and replaced.pk != model_version.pk:
        replaced.status = ModelVersion.Status.RETIRED
        replaced.save(update_fields=["status"])
    model_version.status = ModelVersion.Status.SERVING
    model_version.save(update_fields=["status"])
    return replaced


# The frozen evaluation set -----------------------------------------------------------------


def evaluation_set_freeze(
    *, entries: list[LabelledImage], source: str, actor=None
) -> EvaluationSet:
    """Freeze the evaluation set from these images unless one is frozen already (by a
    concurrent request too: the first one wins)."""
    existing = current_evaluation_set()
    if existing is not None:
        return existing
    try:
        with transaction.atomic():
            return _evaluation_set_create(entries, source=source, actor=actor, version=1)
    except IntegrityError:
        return current_evaluation_set()


def evaluation_set_extend(
    *, entries: list[LabelledImage], source: str, actor=None
) -> EvaluationSet:
    """The explicit action that grows the evaluation set: a new version, current + new."""
    existing = current_evaluation_set()
    if existing is None:
        return evaluation_set_freeze(entries=entries, source=source, actor=actor)
    known = evaluation_set_entries(existing)
    hashes = {entry.sha256 for entry in known}
    added = [entry for entry in entries if entry.sha256 not in hashes]
    return _evaluation_set_create(
        known + added, source=f"{existing.source}; {source}", actor=actor,
        version=existing.version + 1,
    )  # fmt: skip


def _evaluation_set_create(entries, *, source, actor, version) -> EvaluationSet:
    if not entries:
        raise ValueError("An evaluation set needs at least one labelled image.")
    return EvaluationSet.objects.create(
        version=version,
        entries=[vars(entry) for entry in entries],
        digest=manifest_digest(entries),
        size=len(entries),
        class_counts=class_counts(entries),
        source=source[:200],
        created_by=actor,
    )


# Evaluation and the promotion gate ---------------------------------------------------------


def model_version_evaluate(
    *, model_version: ModelVersion, evaluation_set: EvaluationSet, model=None
) -> dict:
    """The version's report on the evaluation set at its own threshold (computed once)."""
    cached = ModelEvaluation.objects.filter(
        model_version=model_version, evaluation_set=evaluation_set
    ).first()
    if cached is not None:
        return cached.report
    import keras

    from ml_core.training import evaluate

    if model is None:
        model = keras.models.load_model(model_artifact_path(model_version), compile=False)
    entries = [
        e for e in evaluation_set_entries(evaluation_set) if e.label in model_version.classes
    ]
    report = evaluate(
        model,
        entries,
        model_version.classes,
        model_version.preprocessing_config,
        model_version.threshold,
    )
    ModelEvaluation.objects.get_or_create(
        model_version=model_version, evaluation_set=evaluation_set, defaults={"report": report}
    )
    return report


def promotion_gate(*, candidate: ModelVersion, serving: ModelVersion | None) -> dict:
    """Both versions on the frozen evaluation set: the candidate passes when its sensitivity
    is at least the floor, its AUC at least the minimum, and its AUC not worse than the
    serving version's by more than the margin."""
    evaluation_set = current_evaluation_set()
    if evaluation_set is None:
        raise PromotionRefused(
            "No evaluation set is frozen yet: train on confirmed labels or on a folder first."
        )
    candidate_report = model_version_evaluate(
        model_version=candidate, evaluation_set=evaluation_set
    )
    serving_report = (
        model_version_evaluate(model_version=serving, evaluation_set=evaluation_set)
        if serving is not None and serving.pk != candidate.pk
        else None
    )
    floor = settings.KIDNEY_PROMOTION_SENSITIVITY_FLOOR
    margin = settings.KIDNEY_PROMOTION_AUC_MARGIN
    minimum_auc = settings.KIDNEY_PROMOTION_MIN_AUC
    sensitivity = candidate_report["sensitivity"] or 0.0
    candidate_auc = candidate_report["auc"] or 0.0
    checks = {
        "sensitivity_floor": {
            "value": sensitivity, "floor": floor, "passed": sensitivity >= floor,
        },
        # A model that calls everything abnormal has perfect sensitivity: the AUC must show
        # that it separates the classes at all.
        "minimum_auc": {
            "value": candidate_auc, "minimum": minimum_auc, "passed": candidate_auc >= minimum_auc,
        },
    }  # fmt: skip
    if serving_report is not None:
        serving_auc = serving_report["auc"] or 0.0
        checks["auc_margin"] = {
            "candidate": candidate_auc,
            "serving": serving_auc,
            "margin": margin,
            "passed": candidate_auc >= serving_auc - margin,
        }
    return {
        "passed": all(check["passed"] for check in checks.values()),
        "checks": checks,
        "evaluation_set": evaluation_set.version,
        "candidate": {"version": candidate.version, "report": candidate_report},
        "serving": (
            {"version": serving.version, "report": serving_report} if serving_report else None
        ),
    }


def model_version_promote(
    *, model_version: ModelVersion, actor=None, override_reason: str = ""
) -> PromotionLog:
    """Serve this version if it passes the gate (or an override with a reason); log it."""
    return _change_serving(
        target=model_version,
        action=PromotionLog.Action.PROMOTE,
        actor=actor,
        override_reason=override_reason,
    )


def model_version_rollback(
    *, model_version: ModelVersion, actor=None, override_reason: str = ""
) -> PromotionLog:
    """Put back the version that served before this (serving) one, through the same gate."""
    if model_version.status != ModelVersion.Status.SERVING:
        raise PromotionRefused(f"v{model_version.version} is not serving; nothing to roll back.")
    previous = previous_serving_version(model_version)
    if previous is None:
        raise PromotionRefused(f"No version served before v{model_version.version}.")
    return _change_serving(
        target=previous,
        action=PromotionLog.Action.ROLLBACK,
        actor=actor,
        override_reason=override_reason,
    )


def _change_serving(*, target, action, actor, override_reason) -> PromotionLog:
    serving = serving_model_version()
    if serving is not None and serving.pk == target.pk:
        raise PromotionRefused(f"v{target.version} already serves.")
    gate = promotion_gate(candidate=target, serving=serving)
    if gate["passed"]:
        decision = PromotionLog.Decision.PROMOTED
    elif override_reason.strip():
        decision = PromotionLog.Decision.OVERRIDDEN
    else:
        decision = PromotionLog.Decision.REJECTED
    with transaction.atomic():
        if decision != PromotionLog.Decision.REJECTED:
            _serve(target)
        log = PromotionLog.objects.create(
            action=action,
            decision=decision,
            from_version=serving,
            to_version=target,
            actor=actor,
            reason=override_reason.strip(),
            gate=gate,
        )
    if decision != PromotionLog.Decision.REJECTED:
        tracking.set_champion(target.mlflow_version)
    return log


# Training runs -----------------------------------------------------------------------------


def training_run_create(
    *,
    entries: list[LabelledImage],
    parameters: dict,
    data_source: str,
    trigger: str,
    requested_by=None,
    enqueue: bool = True,
) -> TrainingRun:
    """Record a queued run on this manifest; refuse while another run is queued or running.

    With enqueue, the `training` queue runs it once the row is committed.
    """
    training_config_from_parameters(parameters)  # refuse bad parameters before queueing
    if not entries:
        raise ValueError("There are no labelled images to train on.")
    digest = manifest_digest(entries)
    settings.KIDNEY_MANIFESTS_DIR.mkdir(parents=True, exist_ok=True)
    (settings.KIDNEY_MANIFESTS_DIR / f"{digest}.json").write_text(manifest_to_json(entries))
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
            )
            if enqueue:
                from training.tasks import run_training

                transaction.on_commit(lambda: run_training.delay(run.pk))
    except IntegrityError:
        raise TrainingRunActive(TrainingRun.objects.get(active=True)) from None
    return run


def training_run_execute(*, run_id: int, progress: EpochCallback | None = None) -> TrainingRun:
    """Train, evaluate, register a candidate, then try the promotion gate. A run that is not
    queued any more (already executed, or being executed) is left as it is."""
    claimed = TrainingRun.objects.filter(pk=run_id, status=TrainingRun.Status.QUEUED).update(
        status=TrainingRun.Status.RUNNING, started=timezone.now()
    )
    run = TrainingRun.objects.get(pk=run_id)
    if not claimed:
        return run
    try:
        _train(run, progress)
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


def _train(run: TrainingRun, progress: EpochCallback | None) -> None:
    import keras

    from ml_core import plots
    from ml_core.training import train

    config = training_config_from_parameters(run.parameters)
    manifest_path = settings.KIDNEY_MANIFESTS_DIR / f"{run.manifest_digest}.json"
    entries = manifest_from_json(manifest_path.read_text())
    train_entries, validation_entries = block_split(
        entries, fraction=settings.KIDNEY_VALIDATION_FRACTION, gap=settings.KIDNEY_SPLIT_GAP
    )
    initial_model = None
    warm_start = run.parameters.get("warm_start_from")
    if warm_start:
        source = ModelVersion.objects.get(version=warm_start)
        initial_model = keras.models.load_model(model_artifact_path(source), compile=False)

    with tracking.TrainingTracker(f"training-run-{run.pk}") as tracker:
        TrainingRun.objects.filter(pk=run.pk).update(mlflow_run_id=tracker.run_id)
        tracker.log_parameters(
            {
                **run.parameters,
                "data_source": run.data_source,
                "manifest_digest": run.manifest_digest,
                "train_images": len(train_entries),
                "validation_images": len(validation_entries),
            }
        )

        def on_epoch_end(epoch: int, row: dict) -> None:
            tracker.log_epoch(epoch, row)
            TrainingRun.objects.filter(pk=run.pk).update(
                epoch=epoch, progress=min(0.99, epoch / config.epochs)
            )
            logger.info("Training run %s: epoch %s %s", run.pk, epoch, row)
            if progress is not None:
                progress(epoch, row)

        trained = train(
            config,
            train_entries,
            validation_entries,
            initial_model=initial_model,
            feature_cache_dir=settings.KIDNEY_FEATURE_CACHE_DIR,
            on_epoch_end=on_epoch_end,
        )
        tracker.log_report("validation", trained.validation)
        tracker.log_figure_png(
            "validation_roc.png",
            plots.roc_png(
                trained.validation_positive, trained.validation_scores, trained.validation
            ),
        )
        tracker.log_figure_png("validation_confusion.png", plots.confusion_png(trained.validation))

        candidate = model_version_register(
            trained=trained, description=f"Training run {run.pk} on {run.data_source}", serve=False
        )
        candidate.mlflow_run_id = tracker.run_id
        candidate.mlflow_version = tracker.register_model(
            model_artifact_path(candidate), candidate.description
        )
        candidate.save(update_fields=["mlflow_run_id", "mlflow_version"])
        evaluation_set = current_evaluation_set()
        if evaluation_set is not None:
            report = model_version_evaluate(
                model_version=candidate, evaluation_set=evaluation_set, model=trained.model
            )
            tracker.log_report("evaluation", report)
            candidate.metrics = {**candidate.metrics, "evaluation": report}
            candidate.save(update_fields=["metrics"])

    TrainingRun.objects.filter(pk=run.pk).update(
        status=TrainingRun.Status.SUCCEEDED,
        active=None,
        progress=1.0,
        metrics=candidate.metrics,
        history=trained.history,
        model_version=candidate,
        finished=timezone.now(),
    )
    # The run has succeeded whatever the gate decides: the candidate stays registered.
    try:
        log = model_version_promote(model_version=candidate)
        logger.info("Training run %s: candidate v%s %s", run.pk, candidate.version, log.decision)
    except PromotionRefused as refusal:
        logger.info(
            "Training run %s: candidate v%s not promoted: %s", run.pk, candidate.version, refusal
        )
    except Exception:
        logger.exception("Training run %s: the promotion gate failed", run.pk)
