"""Gating on recent studies: the newest block of confirmed labels is held out of a retraining
run and judges its candidate against the serving version, next to the original set."""

import pytest

from ml_core.datasets import LabelledImage
from retraining.services import training_run_request
from scans.models import Scan
from tests.factories import make_scan
from tests.images import phantom_png
from training.evaluation import evaluation_set_freeze, recent_evaluation_set_freeze
from training.files import manifest_load
from training.models import EvaluationSet, ModelEvaluation, ModelVersion, TrainingRun


def report(auc: float, sensitivity: float, specificity: float = 0.8) -> dict:
    return {"auc": auc, "sensitivity": sensitivity, "specificity": specificity, "threshold": 0.5}


def confirm_labels(user, count: int, *, first_seed: int = 0) -> list[Scan]:
    """Uploaded and confirmed scans, normal and stone in turn, in upload order."""
    from django.utils import timezone

    return [
        make_scan(
            user,
            image=phantom_png(size=32, with_stone=bool(index % 2), seed=first_seed + index),
            status=Scan.Status.IMPORTED,
            confirmed_label="stone" if index % 2 else "normal",
            confirmed_at=timezone.now(),
        )
        for index in range(count)
    ]


def runs_before_and_after_new_labels(user, *, before: int, after: int):
    """A training run on `before` confirmed labels (then finished), `after` more labels, and
    the next run: (first run, new scans, second run)."""
    confirm_labels(user, before)
    first = training_run_request(trigger=TrainingRun.Trigger.API, enqueue=False)
    # What the run does once it has a candidate: the set it planned is frozen.
    evaluation_set_freeze(entries=manifest_load(first.evaluation_manifest_digest), source="run 1")
    TrainingRun.objects.filter(pk=first.pk).update(status="succeeded", active=None)
    new = confirm_labels(user, after, first_seed=1000)
    second = training_run_request(trigger=TrainingRun.Trigger.API, enqueue=False)
    return first, new, second


def entries(prefix: str, per_class: int) -> list[LabelledImage]:
    return [
        LabelledImage(f"storage:{prefix}{label}{i}.png", label, i, sha256=f"{prefix}{label}{i}")
        for label in ("normal", "stone")
        for i in range(per_class)
    ]


ARTIFACT_FIELDS = ("classes", "input_size", "preprocessing", "threshold", "artifact")


@pytest.fixture
def versions(db, tiny_model_artifact, settings):
    """A serving version and two candidates, with their reports on an original and a recent
    set stored (as the gate stores what it computed): the gate decides from them."""
    settings.KIDNEY_RECENT_EVALUATION_MIN_PER_CLASS = 20
    original = evaluation_set_freeze(entries=entries("o", 30), source="test")
    recent = recent_evaluation_set_freeze(entries=entries("r", 25), source="newest labels")
    serving, adapted, unadapted = (
        ModelVersion.objects.create(version=number, status=status, **tiny_model_artifact)
        for number, status in ((1, "serving"), (2, "candidate"), (3, "candidate"))
    )
    stored = {
        (serving, original): report(0.90, 0.96),
        (serving, recent): report(0.70, 0.95),
        # Better on recent studies, no worse on the original set.
        (adapted, original): report(0.895, 0.96),
        (adapted, recent): report(0.85, 0.97),
        # Better on the original set, worse on recent studies.
        (unadapted, original): report(0.93, 0.98),
        (unadapted, recent): report(0.62, 0.96),
    }
    for (model_version, evaluation_set), values in stored.items():
        ModelEvaluation.objects.create(
            model_version=model_version, evaluation_set=evaluation_set, report=values
        )
    return serving, adapted, unadapted, original, recent


def test_better_on_recent_studies_and_no_worse_on_the_original_set_is_promoted(
    client_for, versions
):
    _, adapted, _, original, recent = versions

    response = client_for("ml_engineer").post(f"/api/models/{adapted.pk}/promote/")

    assert response.status_code == 200, response.json()
    gate = response.json()["gate"]
    assert gate["passed"] is True
    assert gate["checks"]["recent_auc_margin"] == {
        "candidate": 0.85, "serving": 0.70, "margin": 0.0, "passed": True,
    }  # fmt: skip
    assert gate["evaluation_sets"]["original"]["version"] == original.version
    assert gate["evaluation_sets"]["recent"]["version"] == recent.version
    assert gate["evaluation_sets"]["recent"]["judged"] is True
    assert gate["candidate"]["recent_report"]["auc"] == 0.85


def test_worse_on_recent_studies_is_rejected_however_good_on_the_original_set(client_for, versions):
    serving, _, unadapted, _, _ = versions

    response = client_for("ml_engineer").post(f"/api/models/{unadapted.pk}/promote/")

    assert response.status_code == 409
    checks = response.json()["gate"]["checks"]
    assert checks["auc_margin"]["passed"] is True  # better on the original set ...
    assert checks["recent_auc_margin"]["passed"] is False  # ... worse where it matters now
    serving.refresh_from_db()
    assert serving.status == ModelVersion.Status.SERVING


def test_ranking_the_newest_studies_worse_by_however_little_is_refused(client_for, versions):
    _, adapted, _, _, recent = versions
    ModelEvaluation.objects.filter(model_version=adapted, evaluation_set=recent).update(
        report=report(0.699, 0.97)  # the serving version ranks them at 0.70
    )

    response = client_for("ml_engineer").post(f"/api/models/{adapted.pk}/promote/")

    assert response.status_code == 409
    checks = response.json()["gate"]["checks"]
    assert checks["auc_margin"]["passed"] is True
    assert checks["recent_auc_margin"] == {
        "candidate": 0.699, "serving": 0.70, "margin": 0.0, "passed": False,
    }  # fmt: skip


def test_the_sensitivity_floor_applies_on_recent_studies_too(client_for, versions, settings):
    serving, adapted, _, _, recent = versions
    settings.KIDNEY_PROMOTION_SENSITIVITY_FLOOR = 0.975  # adapted: 0.97 on recent studies
    ModelEvaluation.objects.filter(model_version=serving, evaluation_set=recent).update(
        report=report(0.70, 0.98)
    )

    response = client_for("ml_engineer").post(f"/api/models/{adapted.pk}/promote/")

    assert response.status_code == 409
    assert response.json()["gate"]["checks"]["recent_sensitivity_floor"] == {
        "value": 0.97, "floor": 0.975, "serving": 0.98, "passed": False,
    }  # fmt: skip


def test_below_the_floor_itself_the_serving_version_gives_way_to_one_that_misses_fewer(
    client_for, versions, settings
):
    _, adapted, _, original, recent = versions
    settings.KIDNEY_PROMOTION_SENSITIVITY_FLOOR = 0.99  # serving: 0.95 on recent studies
    engineer = client_for("ml_engineer")
    losing = ModelVersion.objects.create(
        version=4, status="candidate", **{f: getattr(adapted, f) for f in ARTIFACT_FIELDS}
    )
    for evaluation_set, values in ((original, report(0.9, 0.99)), (recent, report(0.9, 0.9))):
        ModelEvaluation.objects.create(
            model_version=losing, evaluation_set=evaluation_set, report=values
        )

    refused = engineer.post(f"/api/models/{losing.pk}/promote/")
    promoted = engineer.post(f"/api/models/{adapted.pk}/promote/")

    assert refused.status_code == 409  # 0.90 on recent studies against the serving 0.95
    assert refused.json()["gate"]["checks"]["recent_sensitivity_floor"]["passed"] is False
    assert promoted.status_code == 200, promoted.json()  # 0.97 against 0.95: fewer missed
    assert promoted.json()["gate"]["checks"]["recent_sensitivity_floor"]["serving"] == 0.95


def test_below_the_specificity_floor_itself_the_serving_version_gives_way_to_one_that_flags_fewer(
    client_for, versions
):
    serving, adapted, unadapted, original, _ = versions
    # An initial model served by override that flags nearly every normal scan (replay T).
    ModelEvaluation.objects.filter(model_version=serving, evaluation_set=original).update(
        report=report(0.90, 0.96, specificity=0.05)
    )
    ModelEvaluation.objects.filter(model_version=adapted, evaluation_set=original).update(
        report=report(0.895, 0.96, specificity=0.3)
    )
    ModelEvaluation.objects.filter(model_version=unadapted, evaluation_set=original).update(
        report=report(0.93, 0.98, specificity=0.02)
    )
    engineer = client_for("ml_engineer")

    refused = engineer.post(f"/api/models/{unadapted.pk}/promote/")
    promoted = engineer.post(f"/api/models/{adapted.pk}/promote/")

    assert refused.status_code == 409
    assert refused.json()["gate"]["checks"]["specificity_floor"] == {
        "value": 0.02, "floor": 0.5, "serving": 0.05, "passed": False,
    }  # fmt: skip
    assert promoted.status_code == 200, promoted.json()  # 0.3 against 0.05: fewer flagged
    assert promoted.json()["gate"]["checks"]["specificity_floor"]["serving"] == 0.05


def test_a_recent_set_too_small_to_judge_is_recorded_and_left_out(client_for, versions, settings):
    _, adapted, _, _, _ = versions
    settings.KIDNEY_RECENT_EVALUATION_MIN_PER_CLASS = 26

    response = client_for("ml_engineer").post(f"/api/models/{adapted.pk}/promote/")

    gate = response.json()["gate"]
    assert gate["evaluation_sets"]["recent"]["judged"] is False
    assert "not enough to judge" in gate["evaluation_sets"]["recent"]["reason"]
    assert not any(name.startswith("recent_") for name in gate["checks"])


@pytest.mark.django_db
def test_retraining_holds_the_newest_labels_out_and_never_trains_on_what_judges_it(
    client_for, serving_model, settings
):
    settings.KIDNEY_SPLIT_GAP = 2
    settings.KIDNEY_RECENT_EVALUATION_MIN_PER_CLASS = 5
    confirm_labels(client_for("radiologist").user, 120)

    run = training_run_request(trigger=TrainingRun.Trigger.API, enqueue=False)

    # The original set is planned now and frozen once the run has a candidate to judge.
    assert not EvaluationSet.objects.filter(kind="original").exists()
    original = manifest_load(run.evaluation_manifest_digest)
    recent = run.recent_evaluation_set
    assert recent.kind == "recent"
    # 20% of the 46 + 46 left outside the original set and its gap.
    assert recent.class_counts == {"normal": 9, "stone": 9}
    trained_on = {entry.sha256 for entry in manifest_load(run.manifest_digest)}
    judged_by = {entry.sha256 for entry in original} | {e["sha256"] for e in recent.entries}
    assert not trained_on & judged_by
    assert run.manifest_size == 120 - 24 - 18 - 2 * 2 * 2  # less both sets and their gaps
    again = recent_evaluation_set_freeze(
        entries=[LabelledImage(**values) for values in recent.entries], source="the same block"
    )
    assert again == recent  # the same block is the same set


@pytest.mark.django_db
def test_a_threshold_that_flags_most_normal_scans_is_rejected_however_sensitive(
    client_for, versions
):
    _, adapted, _, _, recent = versions
    ModelEvaluation.objects.filter(model_version=adapted, evaluation_set=recent).update(
        report=report(0.85, 1.0, specificity=0.2)
    )

    response = client_for("ml_engineer").post(f"/api/models/{adapted.pk}/promote/")

    assert response.status_code == 409
    checks = response.json()["gate"]["checks"]
    assert checks["recent_specificity_floor"] == {
        "value": 0.2, "floor": 0.5, "serving": 0.8, "passed": False,
    }  # fmt: skip
    assert checks["specificity_floor"]["passed"] is True


@pytest.mark.django_db
def test_the_recent_block_is_what_is_new_since_the_last_run_and_the_next_run_trains_on_it(
    client_for, serving_model, settings
):
    settings.KIDNEY_SPLIT_GAP = 2
    settings.KIDNEY_RECENT_EVALUATION_MIN_PER_CLASS = 5
    gap = settings.KIDNEY_SPLIT_GAP

    first, new, second = runs_before_and_after_new_labels(
        client_for("radiologist").user,
        before=200,
        after=16 + 2 * gap,  # 8 + gap a class
    )

    # A fraction of everything (0.2 of each class) would hold out older labels too; the
    # block is the new labels, so what judged the first run is trained on by the second. The
    # first `gap` new labels of each class lie beside the original set: never trained on,
    # they do not judge either.
    assert second.recent_evaluation_set.class_counts == {"normal": 8, "stone": 8}
    judged_by = {entry["sha256"] for entry in second.recent_evaluation_set.entries}
    assert judged_by == {scan.sha256 for scan in new[2 * gap :]}
    trained_on = {entry.sha256 for entry in manifest_load(second.manifest_digest)}
    judged_first = {entry["sha256"] for entry in first.recent_evaluation_set.entries}
    assert len(judged_first) == 2 * 16  # 0.2 of each class's 78 outside the original set
    # All of it but the gap before the new block, in each class.
    assert len(judged_first - trained_on) == 2 * gap
    assert not trained_on & judged_by


@pytest.mark.django_db
def test_a_candidate_threshold_reaches_the_target_on_the_newest_studies_too(
    serving_model, settings, tmp_path
):
    from tests.commands import TINY_TRAINING, run
    from tests.images import write_phantom_folder
    from training.models import PromotionLog

    settings.KIDNEY_SPLIT_GAP = 1
    settings.KIDNEY_RECENT_EVALUATION_MIN_PER_CLASS = 4
    write_phantom_folder(tmp_path, per_class=30, size=48, seed=8)
    run("import_dataset", str(tmp_path))

    run("train", "--from-labels", "--warm-start", *TINY_TRAINING)

    candidate = ModelVersion.objects.get(version=serving_model.version + 1)
    thresholds = candidate.metrics["validation"]["thresholds"]
    assert set(thresholds) == {"validation", "validation_and_recent"}
    assert candidate.threshold == thresholds["validation_and_recent"]
    gate = PromotionLog.objects.get(to_version=candidate).gate
    assert gate["evaluation_sets"]["recent"]["judged"] is True
    # Both blocks together reach the target, so the recent block alone cannot fall far short.
    validation_stones = candidate.metrics["validation"]["n"]["stone"]
    recent_stones = gate["evaluation_sets"]["recent"]["class_counts"]["stone"]
    missed_at_most = (1 - settings.KIDNEY_TARGET_SENSITIVITY) * (validation_stones + recent_stones)
    recent_sensitivity = gate["candidate"]["recent_report"]["sensitivity"]
    assert (1 - recent_sensitivity) * recent_stones <= missed_at_most + 1e-9
    assert gate["candidate"]["report"]["threshold"] == candidate.threshold


@pytest.mark.django_db
def test_labels_beside_the_original_set_are_never_trained_on_on_either_side(
    client_for, serving_model, settings
):
    settings.KIDNEY_SPLIT_GAP = 3
    settings.KIDNEY_RECENT_EVALUATION_MIN_PER_CLASS = 5
    # The second run's labels are acquired after the set the first one froze, next to it.
    _, _, second = runs_before_and_after_new_labels(
        client_for("radiologist").user, before=120, after=100
    )

    trained_on = {entry.sha256 for entry in manifest_load(second.manifest_digest)}
    judged_by = {entry["sha256"] for entry in EvaluationSet.objects.get(kind="original").entries}
    gap = settings.KIDNEY_SPLIT_GAP
    for label in ("normal", "stone"):
        in_order = list(
            Scan.objects.filter(confirmed_label=label)
            .order_by("created", "id")
            .values_list("sha256", flat=True)
        )
        positions = [i for i, sha256 in enumerate(in_order) if sha256 in judged_by]
        first_held, last_held = min(positions), max(positions)
        assert last_held < len(in_order) - gap - 1  # the set is in the middle now
        beside = (
            in_order[first_held - gap : first_held] + in_order[last_held + 1 : last_held + 1 + gap]
        )
        assert not trained_on & set(beside)
        assert in_order[first_held - gap - 1] in trained_on
        assert in_order[last_held + gap + 1] in trained_on
