"""Reads across both sides of the loop: confirmed labels as training data, and how a model
version's predictions agree with them."""

from collections import Counter

import numpy as np
from django.conf import settings
from django.db.models import Count, QuerySet

from ml_core.datasets import LabelledImage
from ml_core.decision import NEGATIVE_CLASS, label_agreement, roc_auc
from ml_core.recipes import FROM_FOLDER, RETRAIN
from scans.models import Prediction, Scan
from training.files import storage_reference
from training.models import PromotionLog, TrainingRun
from training.selectors import last_training_run, serving_model_version


def confirmed_scans(classes: list[str] | None = None) -> QuerySet[Scan]:
    scans = Scan.objects.exclude(confirmed_label="")
    return scans.filter(confirmed_label__in=classes) if classes else scans


def contradicted_images() -> set[str]:
    """The sha256 of images confirmed with different labels on different scans (the same
    bytes uploaded twice): until the labels agree, neither is trained or judged on."""
    labels = (
        confirmed_scans().values("sha256").annotate(labels=Count("confirmed_label", distinct=True))
    )
    return set(labels.filter(labels__gt=1).values_list("sha256", flat=True))


def confirmed_label_entries(classes: list[str]) -> list[LabelledImage]:
    """Confirmed scans as a manifest of files in storage; upload order stands for acquisition
    order, and a DICOM study reference keeps the slices of one study on one side of a split.
    Contradicted images are left out."""
    scans = confirmed_scans(classes).exclude(sha256__in=contradicted_images())
    scans = scans.order_by("created", "id")
    return [
        LabelledImage(
            path=storage_reference(scan.file.name),
            label=scan.confirmed_label,
            order=order,
            group=scan.study_reference,
            sha256=scan.sha256,
        )
        for order, scan in enumerate(scans.iterator())
    ]


def new_confirmed_labels() -> QuerySet[Scan]:
    """The labels confirmed since the last training run was requested."""
    last = last_training_run()
    scans = confirmed_scans()
    return scans.filter(confirmed_at__gt=last.created) if last else scans


def refused_candidates_in_a_row(limit: int = 50) -> list[dict]:
    """The candidates of the newest training runs that did not come to serve, newest first,
    back to the last one that did: each with why the gate kept it out."""
    streak = []
    runs = TrainingRun.objects.filter(
        status=TrainingRun.Status.SUCCEEDED, model_version__isnull=False
    ).select_related("model_version")
    for run in runs[:limit]:
        candidate = run.model_version
        decisions = PromotionLog.objects.filter(to_version=candidate)
        if decisions.filter(decision__in=PromotionLog.SERVING_DECISIONS).exists():
            break
        rejection = decisions.first()
        if rejection is not None and rejection.decision == PromotionLog.Decision.REJECTED:
            checks = rejection.gate.get("checks", {})
            reasons = [name for name, check in checks.items() if not check["passed"]]
        else:
            reasons = [candidate.metrics.get("gate", {}).get("detail", "not judged")]
        streak.append({"version": candidate.version, "run": run.pk, "reasons": reasons})
    return streak


def refusal_summary(streak: list[dict]) -> str:
    """What kept a streak of candidates out, most frequent first."""
    counts = Counter(reason for refused in streak for reason in refused["reasons"])
    return "; ".join(f"{reason} ({n} of {len(streak)})" for reason, n in counts.most_common())


def new_confirmed_label_hashes() -> set[str]:
    return set(new_confirmed_labels().values_list("sha256", flat=True))


def label_training_parameters() -> dict:
    """Retraining on new labels: a new head on the serving model's base (ml_core.recipes
    RETRAIN, with KIDNEY_RETRAIN_PARAMETERS over it), with cached features, so that it costs
    little; from scratch (FROM_FOLDER) when nothing serves yet."""
    serving = serving_model_version()
    if serving is None:
        return {**FROM_FOLDER.to_dict(), "classes": list(settings.KIDNEY_CLASSES)}
    parameters = {**RETRAIN.to_dict(), **settings.KIDNEY_RETRAIN_PARAMETERS}
    parameters.update(
        classes=list(serving.classes),
        input_size=serving.input_size,
        normalisation=serving.preprocessing_config.normalisation,
        window_width=serving.preprocessing_config.window_width,
        window_level=serving.preprocessing_config.window_level,
        warm_start_from=serving.version,
    )
    return parameters


def model_version_agreement(model_version, *, newest: int | None = None) -> dict:
    """The version's predictions, as it made them, against the labels radiologists
    confirmed: all of them, or the newest `newest` (drift shows there before any retraining).
    """
    pairs = (
        Prediction.objects.filter(model_version=model_version)
        .exclude(scan__confirmed_label="")
        .order_by("-scan__confirmed_at")
    )
    rows = list(pairs.values_list("scan__confirmed_label", "label", "abnormal_score")[:newest])
    confirmed = [row[0] for row in rows]
    figures = label_agreement(confirmed, [row[1] for row in rows], model_version.classes)
    auc = roc_auc(
        np.array([label != NEGATIVE_CLASS for label in confirmed], dtype=bool),
        np.array([row[2] for row in rows]),
    )
    return {**figures, "auc": auc}


def model_version_recent_agreement(model_version) -> dict:
    window = settings.KIDNEY_RECENT_AGREEMENT_WINDOW
    return {**model_version_agreement(model_version, newest=window), "window": window}
