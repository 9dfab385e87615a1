"""Studies through the REST API: who sees them, the slice strip, and the radiologist's review
of a study verdict reaching training as slice labels only where it is unambiguous. And the
study rule itself (ml_core.study) on score profiles."""

import numpy as np
import pytest

from ml_core.study import (
    StudyRule,
    built_studies,
    position_along_normal,
    study_score,
    study_threshold_from_slices,
    study_verdict,
    wilson_interval,
)
from scans.models import DECISION_SUPPORT_NOTICE, ReviewEvent, Scan
from tests.factories import make_study

RULE = StudyRule(window=3)


def profile(length: int, high: tuple[int, ...], *, low=0.1, peak=0.9) -> np.ndarray:
    scores = np.full(length, low)
    scores[list(high)] = peak
    return scores


def test_three_adjacent_high_slices_flag_a_study_and_are_its_key_slices():
    scores = profile(100, (40, 41, 42))
    verdict = study_verdict([scores], RULE, threshold=0.5)

    assert verdict.positive
    assert set(verdict.key_slices[:3]) == {40, 41, 42}
    assert verdict.score == pytest.approx(0.9)


def test_scattered_single_high_slices_do_not_flag_a_study():
    verdict = study_verdict([profile(100, (10, 35, 60, 85))], RULE, threshold=0.5)

    assert not verdict.positive
    assert verdict.score == pytest.approx((0.9 + 0.1 + 0.1) / 3)
    assert len(verdict.key_slices) == 3  # the most suspicious run, for the reader to look at


def test_a_short_series_down_to_one_key_image_is_scored_whole():
    assert study_verdict([np.array([0.9])], RULE, threshold=0.5).positive
    assert study_verdict([np.array([0.9, 0.8])], RULE, threshold=0.5).key_slices == [0, 1]
    assert not study_verdict([np.array([0.2])], RULE, threshold=0.5).positive


def test_runs_never_span_two_series():
    # Two high slices at the end of one series and one at the start of the next.
    series = [profile(10, (8, 9)), profile(10, (0,))]
    assert study_score(series, RULE) == pytest.approx((0.9 + 0.9 + 0.1) / 3)
    flagged = study_verdict([profile(10, (8, 9)), profile(10, (0, 1, 2))], RULE, 0.7)
    assert set(flagged.key_slices[:3]) == {10, 11, 12}


def test_the_position_along_the_slice_normal_orders_slices():
    axial = [1, 0, 0, 0, 1, 0]
    assert position_along_normal([-10, 5, -30.0], axial) == -30.0
    coronal = [1, 0, 0, 0, 0, -1]
    assert position_along_normal([0, 12.5, 99], coronal) == pytest.approx(12.5)


def test_the_study_threshold_flags_every_built_stone_study():
    rng = np.random.default_rng(0)
    is_positive = np.array([False] * 200 + [True] * 30)
    scores = np.concatenate([rng.uniform(0.0, 0.4, 200), rng.uniform(0.6, 1.0, 30)])
    threshold = study_threshold_from_slices(is_positive, scores, RULE)

    studies, positive = built_studies(
        scores[~is_positive], scores[is_positive], study_length=50, stone_run=3, rng=rng
    )
    flagged = np.array([study_score([s], RULE) >= threshold for s in studies])
    assert flagged[positive].all()
    assert not flagged[~positive].any()
    assert study_threshold_from_slices(np.array([True, False]), np.array([0.9, 0.1]), RULE) is None


def test_wilson_interval_is_sensible_at_the_edges():
    low, high = wilson_interval(12, 12)
    assert high == 1.0
    assert 0.7 < low < 0.8
    assert wilson_interval(0, 5)[0] == 0.0


@pytest.fixture
def radiologist(client_for):
    return client_for("radiologist")


def test_studies_list_newest_first_with_their_verdict_and_the_notice(
    client_for, serving_model, radiologist
):
    clinician = client_for("clinician")
    older, _ = make_study(clinician.user, serving_model, [0.1, 0.2, 0.9])
    newer, _ = make_study(clinician.user, serving_model, [0.1, 0.1], verdict="normal")

    listed = clinician.get("/api/studies/").json()["results"]

    assert [item["id"] for item in listed] == [str(newer.pk), str(older.pk)]
    assert listed[1]["verdict"] == "stone"
    assert listed[1]["slices"] == 3
    assert listed[1]["model_version"] == serving_model.version
    assert listed[1]["decision_support"] == DECISION_SUPPORT_NOTICE


def test_clinicians_see_only_their_organisations_studies(client_for, serving_model):
    ours = client_for("clinician")
    theirs = client_for("clinician", username="elsewhere")
    from accounts.services import api_user_upsert

    api_user_upsert(username="elsewhere", role="clinician", organisation="Other hospital")
    study, _ = make_study(ours.user, serving_model, [0.9])

    assert theirs.get("/api/studies/").json()["results"] == []
    assert theirs.get(f"/api/studies/{study.pk}/").status_code == 404
    assert ours.get(f"/api/studies/{study.pk}/").status_code == 200


def test_a_study_shows_its_slices_in_anatomical_order_with_the_key_ones(
    client_for, serving_model, radiologist
):
    study, scans = make_study(radiologist.user, serving_model, [0.1, 0.95, 0.3], key=1)
    Scan.objects.filter(pk=scans[0].pk).update(slice_position=5.0)  # now last

    detail = radiologist.get(f"/api/studies/{study.pk}/").json()

    assert [item["scan"] for item in detail["slice_list"]] == [
        str(scans[1].pk),
        str(scans[2].pk),
        str(scans[0].pk),
    ]
    assert [item["key"] for item in detail["slice_list"]] == [True, False, False]
    assert detail["slice_list"][0]["score"] == 0.95
    assert detail["key_slices"] == [str(scans[1].pk)]


def test_a_confirmed_normal_study_labels_every_slice_normal(client_for, serving_model, radiologist):
    study, _ = make_study(radiologist.user, serving_model, [0.1, 0.2, 0.6], verdict="stone")

    answer = radiologist.post(
        f"/api/studies/{study.pk}/review/", {"verdict": "normal", "version": 0}, format="json"
    )

    assert answer.status_code == 200, answer.json()
    assert answer.json()["confirmed_verdict"] == "normal"
    assert set(Scan.objects.filter(study=study).values_list("confirmed_label", flat=True)) == {
        "normal"
    }
    assert ReviewEvent.objects.filter(scan__study=study, new_label="normal").count() == 3


def test_a_stone_study_labels_only_the_slices_marked(client_for, serving_model, radiologist):
    study, scans = make_study(radiologist.user, serving_model, [0.1, 0.9, 0.8, 0.2])

    refused = radiologist.post(
        f"/api/studies/{study.pk}/review/", {"verdict": "stone", "version": 0}, format="json"
    )
    assert refused.status_code == 400
    assert "Mark the slices" in refused.json()["detail"]

    marked = [str(scans[1].pk), str(scans[2].pk)]
    answer = radiologist.post(
        f"/api/studies/{study.pk}/review/",
        {"verdict": "stone", "stone_slices": marked, "version": 0},
        format="json",
    )

    assert answer.status_code == 200
    labels = {str(scan.pk): scan.confirmed_label for scan in Scan.objects.filter(study=study)}
    assert labels == {
        str(scans[0].pk): "",
        marked[0]: "stone",
        marked[1]: "stone",
        str(scans[3].pk): "",
    }
    stale = radiologist.post(
        f"/api/studies/{study.pk}/review/", {"verdict": "normal", "version": 0}, format="json"
    )
    assert stale.status_code == 409


def test_only_radiologists_review_studies(client_for, serving_model):
    clinician = client_for("clinician")
    study, _ = make_study(clinician.user, serving_model, [0.9])

    answer = clinician.post(
        f"/api/studies/{study.pk}/review/", {"verdict": "normal", "version": 0}, format="json"
    )

    assert answer.status_code == 403
    assert not Scan.objects.exclude(confirmed_label="").exists()


def test_the_admin_shows_a_study_as_a_strip_and_confirms_normal_studies(db, client, serving_model):
    from tests.test_admin import staff_in_role

    radiologist = staff_in_role("radiologist", "staff-radiologist")
    study, scans = make_study(radiologist, serving_model, [0.1, 0.9, 0.2], key=1)
    client.force_login(radiologist)

    page = client.get(f"/admin/scans/study/{study.pk}/change/").content.decode()
    confirmed = client.post(
        "/admin/scans/study/", {"action": "confirm_normal", "_selected_action": [str(study.pk)]}
    )

    assert page.count("<figure") == 3
    assert "#1 " in page
    assert f"/admin/scans/scan/{scans[1].pk}/thumbnail.png" in page
    assert confirmed.status_code == 302
    assert set(Scan.objects.filter(study=study).values_list("confirmed_label", flat=True)) == {
        "normal"
    }


def test_the_study_page_shows_the_strip_and_a_radiologist_marks_the_stone(
    db, client, serving_model
):
    from accounts.services import api_user_upsert

    radiologist, _ = api_user_upsert(username="reader", role="radiologist")
    study, scans = make_study(radiologist, serving_model, [0.1, 0.9, 0.8, 0.2], key=2)
    client.force_login(radiologist)

    page = client.get(f"/review/studies/{study.pk}/").content.decode()
    listed = client.get("/review/studies/").content.decode()
    malformed = client.post(f"/review/studies/{study.pk}/", {"verdict": "normal", "version": "x"})
    assert malformed.status_code == 302
    assert not Scan.objects.filter(study=study).exclude(confirmed_label="").exists()
    posted = client.post(
        f"/review/studies/{study.pk}/",
        {"verdict": "stone", "stone_slices": [str(scans[1].pk)], "version": "0"},
    )

    assert page.count('name="stone_slices"') == 4
    assert page.count('class="key"') == 2
    assert DECISION_SUPPORT_NOTICE in page
    assert str(study.pk) in listed
    assert posted.status_code == 302
    labels = dict(Scan.objects.filter(study=study).values_list("pk", "confirmed_label"))
    assert labels[scans[1].pk] == "stone"
    assert labels[scans[2].pk] == ""


def test_a_studys_slices_stay_out_of_the_slice_review_queue(client_for, serving_model):
    from tests.factories import make_prediction, make_scan

    radiologist = client_for("radiologist")
    make_study(radiologist.user, serving_model, [0.4, 0.5])
    alone = make_scan(radiologist.user, status=Scan.Status.PREDICTED)
    make_prediction(alone, serving_model, label="stone", stone=0.6)

    queue = radiologist.get("/api/review-queue/").json()["results"]

    assert [item["id"] for item in queue] == [str(alone.pk)]


def test_a_shipped_version_served_before_study_thresholds_gets_its_own(db, tiny_model_artifact):
    import importlib

    from django.apps import apps
    from django.conf import settings

    from ml_core.shipped import shipped_description
    from training.models import ModelVersion

    description = shipped_description(settings.KIDNEY_SHIPPED_MODEL_DIR)
    fields = {**tiny_model_artifact, "study_rule": {}, "study_threshold": None}
    fields["threshold"] = description["threshold"]
    shipped = ModelVersion.objects.create(version=1, model_card="/model-card/", **fields)
    fields["threshold"] = 0.5
    other = ModelVersion.objects.create(version=2, model_card="/model-card/", **fields)
    migration = importlib.import_module("training.migrations.0009_shipped_study_threshold")

    migration.shipped_study_decision(apps, None)

    shipped.refresh_from_db()
    other.refresh_from_db()
    assert shipped.study_threshold == description["study"]["threshold"]
    assert shipped.study_rule == {"window": 3}
    assert other.study_threshold is None
