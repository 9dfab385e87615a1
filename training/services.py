"""Model versions: register them, freeze the evaluation set, gate and change what serves.

Nothing here knows where labelled images come from. The database is the record of what
serves; MLflow's registry follows it (a change of serving version never waits for MLflow).
"""

import logging
import tempfile
from pathlib import Path

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Max

from ml_core.datasets import LabelledImage, class_counts, manifest_digest
from ml_core.decision import NEGATIVE_CLASS
from ml_core.training import TrainedClassifier
from training import files, tracking
from training.models import EvaluationSet, ModelEvaluation, ModelVersion, PromotionLog
from training.selectors import (
    current_evaluation_set,
    evaluation_set_entries,
    latest_recent_evaluation_set,
    previous_serving_version,
    serving_model_version,
)

logger = logging.getLogger(__name__)


class PromotionRefused(Exception):
    def __init__(self, message: str, log: PromotionLog | None = None):
        super().__init__(message)
        self.log = log


class RegistrationFailed(Exception):
    """The candidate could not be registered; nothing of it was kept."""


# Model versions ----------------------------------------------------------------------------


def model_version_register(
    *, trained: TrainedClassifier, description: str, tracker: tracking.TrainingTracker
) -> ModelVersion:
    """Record a trained model as a new candidate version: in MLflow's registry (under the
    tracker's run), in storage and in the database, all or nothing."""
    mlflow_version = artifact = None
    try:
        with tempfile.TemporaryDirectory() as folder:
            saved = Path(folder) / "model.keras"
            trained.model.save(saved)
            try:
                mlflow_version = tracker.register_model(saved, description)
            except Exception as error:
                raise RegistrationFailed(
                    f"MLflow could not register the candidate ({type(error).__name__}: "
                    f"{error}); nothing was kept, and the run can be retried."
                ) from error
            artifact = files.artifact_store(saved)
        preprocessing = trained.preprocessing.to_dict()
        input_size = preprocessing.pop("input_size")
        with transaction.atomic():
            latest = ModelVersion.objects.aggregate(Max("version"))["version__max"] or 0
            return ModelVersion.objects.create(
                version=latest + 1,
                classes=trained.classes,
                input_size=input_size,
                preprocessing=preprocessing,
                threshold=trained.threshold,
                metrics={"validation": trained.validation},
                artifact=artifact,
                description=description,
                mlflow_run_id=tracker.run_id,
                mlflow_version=mlflow_version,
            )
    except BaseException:
        _discard(artifact=artifact, mlflow_version=mlflow_version)
        raise


def model_version_discard(model_version: ModelVersion) -> None:
    """Remove a candidate that never served (its run failed after registering it)."""
    if model_version.status != ModelVersion.Status.CANDIDATE:
        raise ValueError(f"{model_version.label} is {model_version.status}; only a candidate.")
    model_version.delete()
    _discard(artifact=model_version.artifact, mlflow_version=model_version.mlflow_version)


def _discard(*, artifact: str | None, mlflow_version: str | None) -> None:
    if artifact:
        files.artifact_delete(artifact)
    if mlflow_version:
        try:
            tracking.delete_model_version(mlflow_version)
        except Exception:
            logger.exception("MLflow version %s could not be deleted", mlflow_version)


def model_version_bootstrap(*, trained: TrainedClassifier, description: str) -> PromotionLog:
    """Register a placeholder (in MLflow too, like every version) and serve it, ungated."""
    with tracking.TrainingTracker("bootstrap-placeholder") as tracker:
        tracker.log_report("validation", trained.validation)
        model_version = model_version_register(
            trained=trained, description=description, tracker=tracker
        )
    return serving_change(
        target=model_version,
        action=PromotionLog.Action.BOOTSTRAP,
        decision=PromotionLog.Decision.OVERRIDDEN,
        gate={"passed": None, "detail": "Not gated: a placeholder served by bootstrap_model."},
        reason="bootstrap_model",
    )


# What serves -------------------------------------------------------------------------------


def serving_change(
    *, target: ModelVersion, action: str, decision: str, gate: dict, actor=None, reason=""
) -> PromotionLog:
    """The one way the serving version changes (or a refusal is recorded): the database and
    the log in one transaction, then MLflow's `champion` alias. If MLflow does not answer,
    serving has changed all the same; the log carries a warning and champion_reconcile moves
    the alias once MLflow answers."""
    with transaction.atomic():
        serving = (
            ModelVersion.objects.select_for_update()
            .filter(status=ModelVersion.Status.SERVING)
            .first()
        )
        if decision != PromotionLog.Decision.REJECTED:
            if serving is not None and serving.pk != target.pk:
                serving.status = ModelVersion.Status.RETIRED
                serving.save(update_fields=["status"])
            target.status = ModelVersion.Status.SERVING
            target.save(update_fields=["status"])
        log = PromotionLog.objects.create(
            action=action,
            decision=decision,
            from_version=serving,
            to_version=target,
            actor=actor,
            reason=reason,
            gate=gate,
        )
    log.registry_warning = ""
    if decision != PromotionLog.Decision.REJECTED:
        log.registry_warning = _champion_follow(target)
    return log


def _champion_follow(model_version: ModelVersion) -> str:
    """Move `champion` to the version that now serves; a warning if MLflow did not answer."""
    if not model_version.mlflow_version:
        return f"{model_version.label} is not in the MLflow registry; `champion` did not move."
    try:
        tracking.set_champion(model_version.mlflow_version)
    except Exception as error:
        logger.warning("MLflow unreachable, champion alias left behind: %s", error)
        return (
            f"{model_version.label} serves, but MLflow did not answer ({type(error).__name__}); "
            "its `champion` alias will follow when MLflow answers again."
        )
    return ""


def champion_reconcile() -> str:
    """Bring MLflow's `champion` alias in line with the serving version (celery beat).
    Returns what it did; raises if MLflow does not answer (the next check tries again)."""
    serving = serving_model_version()
    if serving is None or not serving.mlflow_version:
        return "nothing to reconcile"
    if tracking.champion_version() == serving.mlflow_version:
        return "in line"
    tracking.set_champion(serving.mlflow_version)
    logger.info("MLflow champion alias moved to %s", serving.label)
    return f"champion moved to {serving.label}"


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


def recent_evaluation_set_freeze(*, entries: list[LabelledImage], source: str) -> EvaluationSet:
    """Freeze the newest block of labels as a recent evaluation set (the same block again is
    the same set)."""
    digest = manifest_digest(entries)
    recent = EvaluationSet.objects.filter(kind=EvaluationSet.Kind.RECENT)
    for _ in range(3):  # concurrent requests: the loser of a version race tries the next one
        existing = recent.filter(digest=digest).first()
        if existing is not None:
            return existing
        latest = recent.aggregate(Max("version"))["version__max"] or 0
        try:
            with transaction.atomic():
                return _evaluation_set_create(
                    entries, source=source, actor=None, version=latest + 1,
                    kind=EvaluationSet.Kind.RECENT,
                )  # fmt: skip
        except IntegrityError:
            continue
    raise RuntimeError("Could not freeze the recent evaluation set; try again.")


def _evaluation_set_create(
    entries, *, source, actor, version, kind=EvaluationSet.Kind.ORIGINAL
) -> EvaluationSet:
    if not entries:
        raise ValueError("An evaluation set needs at least one labelled image.")
    return EvaluationSet.objects.create(
        kind=kind,
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
    from ml_core.training import evaluate

    if model is None:
        model = files.model_load(model_version.artifact)
    entries = [
        e for e in evaluation_set_entries(evaluation_set) if e.label in model_version.classes
    ]
    report = evaluate(
        model,
        files.local_entries(entries),
        model_version.classes,
        model_version.preprocessing_config,
        model_version.threshold,
        feature_cache_dir=settings.KIDNEY_FEATURE_CACHE_DIR,
    )
    ModelEvaluation.objects.get_or_create(
        model_version=model_version, evaluation_set=evaluation_set, defaults={"report": report}
    )
    return report


def promotion_gate(
    *,
    candidate: ModelVersion,
    serving: ModelVersion | None,
    recent_set: EvaluationSet | None = None,
) -> dict:
    """Both versions on the original evaluation set and, where it can judge, on the recent
    one. The candidate passes when, on each set, its sensitivity is at least the floor and its
    AUC not worse than the serving version's by more than the margin, and its AUC on the
    original set is at least the minimum."""
    evaluation_set = current_evaluation_set()
    if evaluation_set is None:
        raise PromotionRefused(
            "No evaluation set is frozen yet: train on confirmed labels or on a folder first."
        )
    candidate_report = model_version_evaluate(
        model_version=candidate, evaluation_set=evaluation_set
    )
    serving_report = _serving_report(serving, candidate, evaluation_set)
    minimum_auc = settings.KIDNEY_PROMOTION_MIN_AUC
    candidate_auc = candidate_report["auc"] or 0.0
    checks = {
        **_sensitivity_and_margin(candidate_report, serving_report, prefix=""),
        # A model that calls everything abnormal has perfect sensitivity: the AUC must show
        # that it separates the classes at all.
        "minimum_auc": {
            "value": candidate_auc, "minimum": minimum_auc, "passed": candidate_auc >= minimum_auc,
        },
    }  # fmt: skip
    sets = {"original": _set_summary(evaluation_set)}
    candidate_side = _gate_side(candidate, candidate_report)
    serving_side = _gate_side(serving, serving_report) if serving_report else None
    if recent_set is not None:
        reason = _why_recent_cannot_judge(recent_set, candidate)
        sets["recent"] = {**_set_summary(recent_set), "judged": not reason, "reason": reason}
        if not reason:
            recent_report = model_version_evaluate(
                model_version=candidate, evaluation_set=recent_set
            )
            serving_recent = _serving_report(serving, candidate, recent_set)
            checks.update(_sensitivity_and_margin(recent_report, serving_recent, prefix="recent_"))
            candidate_side["recent_report"] = recent_report
            if serving_side is not None:
                serving_side["recent_report"] = serving_recent
    return {
        "passed": all(check["passed"] for check in checks.values()),
        "checks": checks,
        "evaluation_set": evaluation_set.version,
        "evaluation_sets": sets,
        "candidate": candidate_side,
        "serving": serving_side,
    }


def _serving_report(serving, candidate, evaluation_set) -> dict | None:
    if serving is None or serving.pk == candidate.pk:
        return None
    return model_version_evaluate(model_version=serving, evaluation_set=evaluation_set)


def _sensitivity_and_margin(report: dict, serving_report: dict | None, *, prefix: str) -> dict:
    floor = settings.KIDNEY_PROMOTION_SENSITIVITY_FLOOR
    margin = settings.KIDNEY_PROMOTION_AUC_MARGIN
    sensitivity = report["sensitivity"] or 0.0
    checks = {
        f"{prefix}sensitivity_floor": {
            "value": sensitivity, "floor": floor, "passed": sensitivity >= floor,
        }
    }  # fmt: skip
    if serving_report is not None:
        candidate_auc, serving_auc = report["auc"] or 0.0, serving_report["auc"] or 0.0
        checks[f"{prefix}auc_margin"] = {
            "candidate": candidate_auc,
            "serving": serving_auc,
            "margin": margin,
            "passed": candidate_auc >= serving_auc - margin,
        }
    return checks


def _why_recent_cannot_judge(recent_set: EvaluationSet, candidate: ModelVersion) -> str:
    """Empty when the recent set can judge the candidate: enough images of each class, and
    none of them trained on."""
    minimum = settings.KIDNEY_RECENT_EVALUATION_MIN_PER_CLASS
    counts = recent_set.class_counts
    negatives = counts.get(NEGATIVE_CLASS, 0)
    positives = sum(n for label, n in counts.items() if label != NEGATIVE_CLASS)
    if min(negatives, positives) < minimum:
        return (
            f"not enough to judge: {negatives} normal and {positives} abnormal images, fewer "
            f"than {minimum} of either (KIDNEY_RECENT_EVALUATION_MIN_PER_CLASS)"
        )
    run = getattr(candidate, "training_run", None)
    if run is not None:
        trained_on = {entry.sha256 for entry in files.manifest_load(run.manifest_digest)}
        judged_by = {entry.sha256 for entry in evaluation_set_entries(recent_set)}
        if trained_on & judged_by:
            return "the candidate was trained on some of these images"
    return ""


def _set_summary(evaluation_set: EvaluationSet) -> dict:
    return {
        "version": evaluation_set.version,
        "size": evaluation_set.size,
        "class_counts": evaluation_set.class_counts,
        "digest": evaluation_set.digest,
    }


def _gate_side(model_version: ModelVersion, report: dict) -> dict:
    return {
        "version": model_version.version,
        "mlflow_version": model_version.mlflow_version,
        "report": report,
    }


def model_version_promote(
    *,
    model_version: ModelVersion,
    actor=None,
    override_reason: str = "",
    recent_set: EvaluationSet | None = None,
) -> PromotionLog:
    """Serve this version if it passes the gate (or an override with a reason); log it. The
    recent set is the given one (a training run's), else the newest."""
    return _gated_change(
        target=model_version,
        action=PromotionLog.Action.PROMOTE,
        actor=actor,
        override_reason=override_reason,
        recent_set=recent_set,
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
    return _gated_change(
        target=previous,
        action=PromotionLog.Action.ROLLBACK,
        actor=actor,
        override_reason=override_reason,
        recent_set=None,
    )


def _gated_change(*, target, action, actor, override_reason, recent_set) -> PromotionLog:
    serving = serving_model_version()
    if serving is not None and serving.pk == target.pk:
        raise PromotionRefused(f"v{target.version} already serves.")
    gate = promotion_gate(
        candidate=target,
        serving=serving,
        recent_set=recent_set or latest_recent_evaluation_set(),
    )
    if gate["passed"]:
        decision = PromotionLog.Decision.PROMOTED
    elif override_reason.strip():
        decision = PromotionLog.Decision.OVERRIDDEN
    else:
        decision = PromotionLog.Decision.REJECTED
    return serving_change(
        target=target,
        action=action,
        decision=decision,
        gate=gate,
        actor=actor,
        reason=override_reason.strip(),
    )
