"""Evaluation sets (the original one and the recent blocks), a version's report on each
(computed once), and the promotion gate that compares a candidate with the serving version on
them."""

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Max

from ml_core.datasets import LabelledImage, class_counts, manifest_digest
from ml_core.decision import NEGATIVE_CLASS
from training import files
from training.models import EvaluationSet, ModelEvaluation, ModelVersion
from training.selectors import current_evaluation_set, evaluation_set_entries


class PromotionRefused(Exception):
    def __init__(self, message: str, log=None):
        super().__init__(message)
        self.log = log


class GateCannotJudge(PromotionRefused):
    """The evaluation set is too small to judge; the decision log keeps it as not judged."""


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
    """Grow the evaluation set: a new version, current + new (a training run completes a set
    that is not frozen, or was frozen short of its minimum per class, this way)."""
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
    one. The candidate passes when, on each set, its sensitivity and specificity are at least
    their floors (or, where the serving version is below a floor, at least the serving
    version's) and its AUC not worse than the serving version's by more than that set's
    margin (none by default on the recent set: a candidate that ranks the newest studies
    worse does not serve), and its AUC on the original set is at least the minimum. A set
    too small to judge says so instead of refusing."""
    evaluation_set = current_evaluation_set()
    if evaluation_set is None:
        raise GateCannotJudge(
            "Not enough to judge: no evaluation set is frozen yet. One is frozen once the last "
            f"block of the labelled images holds {settings.KIDNEY_EVALUATION_MIN_PER_CLASS} "
            "images of each class (KIDNEY_EVALUATION_MIN_PER_CLASS)."
        )
    short = classes_short_of(
        evaluation_set.class_counts, candidate.classes, settings.KIDNEY_EVALUATION_MIN_PER_CLASS
    )
    if short:
        # An AUC of 0 on a set without stones would read as a bad candidate; it is no judge.
        raise GateCannotJudge(
            f"Not enough to judge: the evaluation set v{evaluation_set.version} holds {short}; "
            f"it judges with {settings.KIDNEY_EVALUATION_MIN_PER_CLASS} images of each class "
            "(KIDNEY_EVALUATION_MIN_PER_CLASS). The next training run on the confirmed labels "
            "completes it from their last block once that block can."
        )
    candidate_report = model_version_evaluate(
        model_version=candidate, evaluation_set=evaluation_set
    )
    serving_report = _serving_report(serving, candidate, evaluation_set)
    minimum_auc = settings.KIDNEY_PROMOTION_MIN_AUC
    candidate_auc = candidate_report["auc"] or 0.0
    checks = {
        **_sensitivity_and_margin(
            candidate_report, serving_report, prefix="", margin=settings.KIDNEY_PROMOTION_AUC_MARGIN
        ),
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
            checks.update(
                _sensitivity_and_margin(
                    recent_report, serving_recent, prefix="recent_",
                    margin=settings.KIDNEY_PROMOTION_RECENT_AUC_MARGIN,
                )
            )  # fmt: skip
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


def _sensitivity_and_margin(
    report: dict, serving_report: dict | None, *, prefix: str, margin: float
) -> dict:
    floor = settings.KIDNEY_PROMOTION_SENSITIVITY_FLOOR
    specificity_floor = settings.KIDNEY_PROMOTION_SPECIFICITY_FLOOR
    sensitivity = report["sensitivity"] or 0.0
    specificity = report["specificity"] or 0.0
    serving_sensitivity = serving_report.get("sensitivity") if serving_report else None
    serving_specificity = serving_report.get("specificity") if serving_report else None
    # Where the serving version is below a floor itself, the candidate must not lose against
    # it there: refusing one that misses fewer stones (or flags fewer normal scans) keeps one
    # that misses more.
    checks = {
        f"{prefix}sensitivity_floor": {
            "value": sensitivity, "floor": floor, "serving": serving_sensitivity,
            "passed": sensitivity >= _required(floor, serving_sensitivity),
        },
        # Sensitivity first, but a threshold that flags most normal scans triages nothing.
        f"{prefix}specificity_floor": {
            "value": specificity, "floor": specificity_floor, "serving": serving_specificity,
            "passed": specificity >= _required(specificity_floor, serving_specificity),
        },
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


def _required(floor: float, serving: float | None) -> float:
    return floor if serving is None else min(floor, serving)


def classes_short_of(counts: dict[str, int], classes, minimum: int) -> dict[str, int]:
    """The count of every class when any of them is below the minimum; empty when none is."""
    if all(counts.get(label, 0) >= minimum for label in classes):
        return {}
    return {label: counts.get(label, 0) for label in classes}


def enough_to_judge(counts: dict[str, int]) -> bool:
    """A recent block judges with at least KIDNEY_RECENT_EVALUATION_MIN_PER_CLASS normal and
    abnormal images."""
    negatives = counts.get(NEGATIVE_CLASS, 0)
    positives = sum(n for label, n in counts.items() if label != NEGATIVE_CLASS)
    return min(negatives, positives) >= settings.KIDNEY_RECENT_EVALUATION_MIN_PER_CLASS


def _why_recent_cannot_judge(recent_set: EvaluationSet, candidate: ModelVersion) -> str:
    """Empty when the recent set can judge the candidate: enough images of each class, and
    none of them trained on."""
    if not enough_to_judge(recent_set.class_counts):
        return (
            f"not enough to judge: {recent_set.class_counts}, fewer than "
            f"{settings.KIDNEY_RECENT_EVALUATION_MIN_PER_CLASS} normal or abnormal images "
            "(KIDNEY_RECENT_EVALUATION_MIN_PER_CLASS)"
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
