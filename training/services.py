"""Model versions: register them, and change what serves (through the gate, in
training.evaluation).

Nothing here knows where labelled images come from. The database is the record of what
serves; MLflow's registry follows it (a change of serving version never waits for MLflow).
"""

import logging
import tempfile
from pathlib import Path

from django.db import transaction
from django.db.models import Max

from ml_core.training import TrainedClassifier
from training import files, tracking
from training.evaluation import GateCannotJudge, PromotionRefused, promotion_gate
from training.models import (
    SHIPPED_MODEL_CARD,
    SHIPPED_NOTE,
    EvaluationSet,
    ModelVersion,
    PromotionLog,
)
from training.selectors import (
    latest_recent_evaluation_set,
    previous_serving_version,
    serving_model_version,
)

logger = logging.getLogger(__name__)


class RegistrationFailed(Exception):
    """The candidate could not be registered; nothing of it was kept."""


# Model versions ----------------------------------------------------------------------------


def model_version_register(
    *,
    trained: TrainedClassifier,
    description: str,
    tracker: tracking.TrainingTracker,
    metrics: dict | None = None,
    model_card: str = "",
) -> ModelVersion:
    """Record a trained model as a new candidate version: in MLflow's registry (under the
    tracker's run), in storage and in the database, all or nothing. `metrics` adds reports
    beside its validation report."""
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
                study_rule=trained.study_rule.to_dict(),
                study_threshold=trained.study_threshold,
                metrics={"validation": trained.validation, **(metrics or {})},
                artifact=artifact,
                description=description,
                model_card=model_card,
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


def model_version_ship(*, trained: TrainedClassifier, report: dict) -> PromotionLog:
    """Register the model that ships with the code and serve it, ungated: the held-out report
    it was judged on (the command that made it included) goes to MLflow and to its metrics."""
    with tracking.TrainingTracker("shipped-model") as tracker:
        tracker.log_parameters({"command": report["command"], **report["config"]})
        tracker.log_report("validation", trained.validation)
        tracker.log_report("held_out", report["held_out"])
        model_version = model_version_register(
            trained=trained,
            description=SHIPPED_NOTE,
            tracker=tracker,
            metrics={"held_out": report["held_out"], "made_by": report["command"]},
            model_card=SHIPPED_MODEL_CARD,
        )
    return serving_change(
        target=model_version,
        action=PromotionLog.Action.BOOTSTRAP,
        decision=PromotionLog.Decision.OVERRIDDEN,
        gate={
            "passed": None,
            "detail": "Not gated: the model shipped with the code, served by bootstrap_model; "
            "judged on a held-out block of later studies (see its model card).",
        },
        reason="bootstrap_model (shipped model)",
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
        from_status = serving.status if serving is not None else ""
        to_status = target.status
        if decision in PromotionLog.SERVING_DECISIONS:
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
            from_status=from_status,
            to_status=to_status,
            actor=actor,
            reason=reason,
            gate=gate,
        )
    log.registry_warning = ""
    if decision in PromotionLog.SERVING_DECISIONS:
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
    try:
        gate = promotion_gate(
            candidate=target,
            serving=serving,
            recent_set=recent_set or latest_recent_evaluation_set(),
        )
    except GateCannotJudge as cannot:
        # Logged like every decision, so the log says why nothing changed.
        serving_change(
            target=target, action=action, decision=PromotionLog.Decision.NOT_JUDGED,
            gate={"passed": None, "detail": str(cannot)}, actor=actor,
            reason=override_reason.strip(),
        )  # fmt: skip
        raise
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
