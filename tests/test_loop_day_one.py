"""Day one of the loop at a new hospital: a version serves, labels trickle in, mostly normal.
No run starts until the labels can fill each block of one, and it says why; a failed run
freezes no evaluation set; a set that cannot judge says so instead of refusing; a streak
of refusals says what keeps candidates out."""

import pytest
from django.test import Client
from django.utils import timezone

from retraining.selectors import confirmed_label_entries
from retraining.tasks import retrain_if_enough_new_labels
from scans.models import Scan
from tests.factories import make_scan
from tests.images import phantom_png
from training.evaluation import evaluation_set_freeze
from training.models import EvaluationSet, ModelVersion, PromotionLog, TrainingRun
from training.runs import training_run_execute

pytestmark = pytest.mark.django_db


@pytest.fixture
def loop_settings(settings):
    settings.KIDNEY_SPLIT_GAP = 1
    settings.KIDNEY_EVALUATION_MIN_PER_CLASS = 3
    settings.KIDNEY_RECENT_EVALUATION_MIN_PER_CLASS = 3
    settings.KIDNEY_RETRAIN_MIN_NEW_LABELS = 10
    settings.KIDNEY_RETRAIN_PARAMETERS = {"epochs": 1, "batch_size": 8}
    return settings


def confirm(user, labels: list[str], *, first_seed: int = 0) -> list[Scan]:
    return [
        make_scan(
            user,
            image=phantom_png(size=32, with_stone=label == "stone", seed=first_seed + index),
            status=Scan.Status.IMPORTED,
            confirmed_label=label,
            confirmed_at=timezone.now(),
        )
        for index, label in enumerate(labels)
    ]


def test_the_trigger_waits_while_a_class_cannot_fill_its_blocks_then_starts(
    client_for, serving_model, loop_settings
):
    engineer = client_for("ml_engineer")
    confirm(client_for("radiologist").user, ["normal"] * 40)

    assert retrain_if_enough_new_labels() is None
    status = engineer.get("/api/training-runs/trigger/").json()
    assert status["ready"] is False
    assert status["new_labels"] == 40
    waiting = " ".join(status["waiting_for"])
    assert "the evaluation set" in waiting
    assert "'stone': 0" in waiting
    assert "the recent block" in waiting
    refused = engineer.post("/api/training-runs/", {}, format="json")
    assert refused.status_code == 409
    assert "the evaluation set" in refused.json()["detail"]
    assert not TrainingRun.objects.exists()
    assert not EvaluationSet.objects.exists()  # nothing frozen short of a class

    confirm(client_for("radiologist").user, ["stone", "normal"] * 20, first_seed=100)

    status = engineer.get("/api/training-runs/trigger/").json()
    assert status == {**status, "ready": True, "waiting_for": []}
    started = retrain_if_enough_new_labels()
    run = TrainingRun.objects.get(pk=started)
    assert run.trigger == TrainingRun.Trigger.SCHEDULE
    assert run.recent_evaluation_set.class_counts["stone"] >= 3
    status = engineer.get("/api/training-runs/trigger/").json()
    assert status["ready"] is False
    assert status["active_run"] == run.pk


def test_a_failed_run_freezes_nothing_and_the_next_one_freezes_the_set_it_planned(
    client_for, serving_model, loop_settings
):
    scans = confirm(client_for("radiologist").user, ["normal", "stone"] * 25)
    engineer = client_for("ml_engineer")
    run_id = engineer.post("/api/training-runs/", {}, format="json").json()["id"]
    # One image the run trains on is gone from storage: the run fails reading it.
    scans[0].file.storage.delete(scans[0].file.name)

    failed = training_run_execute(run_id=run_id)

    assert failed.status == TrainingRun.Status.FAILED
    assert not EvaluationSet.objects.filter(kind=EvaluationSet.Kind.ORIGINAL).exists()
    Scan.objects.filter(pk=scans[0].pk).update(confirmed_label="")  # the radiologist withdraws it
    run_id = engineer.post("/api/training-runs/", {}, format="json").json()["id"]

    succeeded = training_run_execute(run_id=run_id)

    assert succeeded.status == TrainingRun.Status.SUCCEEDED, succeeded.error
    frozen = EvaluationSet.objects.get(kind=EvaluationSet.Kind.ORIGINAL)
    assert min(frozen.class_counts.values()) >= 3
    assert "evaluation" in succeeded.model_version.metrics


def legacy_set_without_stones(user) -> EvaluationSet:
    """An evaluation set as an earlier version froze it: normal slices only."""
    confirm(user, ["normal"] * 12, first_seed=500)
    return evaluation_set_freeze(
        entries=confirmed_label_entries(["normal", "stone"]), source="an earlier version"
    )


def test_an_evaluation_set_without_stones_is_not_enough_to_judge_never_a_refusal(
    client_for, serving_model, tiny_model_artifact, loop_settings
):
    legacy_set_without_stones(client_for("radiologist").user)
    candidate = ModelVersion.objects.create(version=2, **tiny_model_artifact)

    response = client_for("ml_engineer").post(f"/api/models/{candidate.pk}/promote/")

    assert response.status_code == 409
    assert response.json()["detail"].startswith("Not enough to judge")
    assert "'stone': 0" in response.json()["detail"]
    assert not PromotionLog.objects.filter(decision=PromotionLog.Decision.REJECTED).exists()
    candidate.refresh_from_db()
    assert candidate.status == ModelVersion.Status.CANDIDATE


def test_a_set_frozen_short_is_completed_by_the_next_run_as_a_new_version(
    client_for, serving_model, loop_settings
):
    legacy = legacy_set_without_stones(client_for("radiologist").user)
    confirm(client_for("radiologist").user, ["normal", "stone"] * 25)
    engineer = client_for("ml_engineer")
    run_id = engineer.post("/api/training-runs/", {}, format="json").json()["id"]

    run = training_run_execute(run_id=run_id)

    assert run.status == TrainingRun.Status.SUCCEEDED, run.error
    current = EvaluationSet.objects.filter(kind=EvaluationSet.Kind.ORIGINAL).latest("version")
    assert current.version == legacy.version + 1
    assert current.class_counts["normal"] > 12
    assert current.class_counts["stone"] >= 3
    gate = run.model_version.metrics.get("gate")
    assert gate is None or not gate["detail"].startswith("Not enough to judge")


def test_a_streak_of_refused_candidates_says_what_keeps_them_out(
    client_for, serving_model, tiny_model_artifact, settings
):
    settings.KIDNEY_LOOP_REFUSALS_ALERT = 3
    for version in (2, 3, 4):
        candidate = ModelVersion.objects.create(version=version, **tiny_model_artifact)
        TrainingRun.objects.create(
            trigger=TrainingRun.Trigger.SCHEDULE, status=TrainingRun.Status.SUCCEEDED,
            active=None, data_source="labels", manifest_digest="0" * 64, manifest_size=1,
            model_version=candidate,
        )  # fmt: skip
        PromotionLog.objects.create(
            action=PromotionLog.Action.PROMOTE, decision=PromotionLog.Decision.REJECTED,
            from_version=serving_model, to_version=candidate,
            gate={"checks": {
                "recent_auc_margin": {"passed": False},
                "specificity_floor": {"passed": version != 3},
                "sensitivity_floor": {"passed": True},
            }},
        )  # fmt: skip
    engineer = client_for("ml_engineer")

    status = engineer.get("/api/training-runs/trigger/").json()

    assert status["refused_in_a_row"] == 3
    assert [refused["version"] for refused in status["refused"]] == [4, 3, 2]
    alert = status["refusal_alert"]
    assert "v4, v3, v2" in alert
    assert "recent_auc_margin (3 of 3); specificity_floor (1 of 3)" in alert
    admin = engineer.user
    admin.is_staff = True
    admin.save()
    browser = Client()
    browser.force_login(admin)
    page = browser.get("/admin/training/trainingrun/")
    assert page.status_code == 200
    assert "recent_auc_margin (3 of 3)" in page.content.decode()


def test_a_run_refused_for_too_few_labels_says_how_many_there_are_and_what_each_block_needs(
    client_for, serving_model, loop_settings
):
    confirm(client_for("radiologist").user, ["normal", "stone", "normal", "stone"])

    refused = client_for("ml_engineer").post("/api/training-runs/", {}, format="json")

    assert refused.status_code == 409
    detail = refused.json()["detail"]
    assert detail.startswith("Not started: the 4 labelled images (2 normal, 2 stone)")
    assert "the evaluation set" in detail
    assert "no labelled images" not in detail
