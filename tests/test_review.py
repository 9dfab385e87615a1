"""Radiologist feedback through the API: roles, review with audit trail, stale writes,
the review queue and agreement per model version."""

import io

import pytest
from rest_framework.test import APIClient

from scans.models import ReviewEvent, Scan
from tests.factories import make_prediction, make_scan
from tests.images import phantom_png


@pytest.fixture
def predicted(db, client_for, serving_model):
    """Five predicted scans with P(stone) spread around the serving threshold."""
    owner = client_for("clinician", "uploader").user
    threshold = serving_model.threshold
    scans = {}
    for name, offset in {"far_no": -0.4, "near_no": -0.05, "nearest": 0.01, "near_yes": 0.1,
                         "far_yes": 0.45}.items():  # fmt: skip
        stone = min(1.0, max(0.0, threshold + offset))
        scan = make_scan(owner, status=Scan.Status.PREDICTED)
        make_prediction(
            scan, serving_model, label="stone" if stone >= threshold else "normal", stone=stone
        )
        scans[name] = scan
    return scans


def review(client, scan, label, *, version=None, note=""):
    if version is None:
        version = client.get(f"/api/scans/{scan.pk}/").json()["review_version"]
    return client.post(
        f"/api/scans/{scan.pk}/review/",
        {"label": label, "note": note, "version": version},
        format="json",
    )


def test_each_relabel_is_an_event_with_who_old_new_note_and_what_the_model_said(
    client_for, predicted, serving_model
):
    radiologist = client_for("radiologist", "dr-house")
    scan = predicted["nearest"]

    labels = ["stone", "normal", "stone"]
    for number, label in enumerate(labels):
        response = review(radiologist, scan, label, note=f"look {number}")
        assert response.status_code == 200, response.json()

    trail = radiologist.get(f"/api/scans/{scan.pk}/reviews/").json()
    assert [event["new_label"] for event in trail] == ["stone", "normal", "stone"]
    assert [event["old_label"] for event in trail] == ["normal", "stone", ""]
    for event in trail:
        assert event["reviewer"] == "dr-house"
        assert event["note"].startswith("look")
        assert event["model_version"] == serving_model.version
        assert event["model_label"] == scan.prediction.label
        assert event["model_probabilities"] == scan.prediction.probabilities
        assert event["created"]
    body = radiologist.get(f"/api/scans/{scan.pk}/").json()
    assert body["confirmed_label"] == "stone"
    assert body["review_version"] == 3
    assert ReviewEvent.objects.count() == 3


def test_a_stale_review_gets_409_and_changes_nothing(client_for, predicted):
    first = client_for("radiologist", "first")
    second = client_for("radiologist", "second")
    scan = predicted["near_no"]
    both_read = first.get(f"/api/scans/{scan.pk}/").json()["review_version"]

    accepted = review(first, scan, "stone", version=both_read)
    stale = review(second, scan, "normal", version=both_read)

    assert accepted.status_code == 200
    assert stale.status_code == 409
    assert stale.json()["review_version"] == both_read + 1
    scan.refresh_from_db()
    assert scan.confirmed_label == "stone"
    assert ReviewEvent.objects.count() == 1


def test_a_review_needs_a_known_label_and_the_version_read(client_for, predicted):
    radiologist = client_for("radiologist")
    scan = predicted["far_yes"]

    unknown = review(radiologist, scan, "banana")
    no_version = radiologist.post(
        f"/api/scans/{scan.pk}/review/", {"label": "stone"}, format="json"
    )

    assert unknown.status_code == 400
    assert list(unknown.json()["fields"]) == ["label"]
    assert no_version.status_code == 400
    assert ReviewEvent.objects.count() == 0


def test_the_queue_lists_unreviewed_predictions_most_uncertain_first(client_for, predicted):
    radiologist = client_for("radiologist")
    review(radiologist, predicted["near_yes"], "stone")

    queue = radiologist.get("/api/review-queue/").json()["results"]

    name_of = {str(scan.pk): name for name, scan in predicted.items()}
    assert [name_of[item["id"]] for item in queue] == ["nearest", "near_no", "far_no", "far_yes"]
    assert [item["positive"] for item in queue] == [True, False, False, True]
    margins = [item["margin"] for item in queue]
    assert margins == sorted(margins)


def test_the_queue_filters_by_flag_version_and_date_and_counts_my_reviews_today(
    client_for, predicted, serving_model
):
    radiologist = client_for("radiologist")
    review(radiologist, predicted["near_yes"], "stone")
    name_of = {str(scan.pk): name for name, scan in predicted.items()}

    def names(**params):
        body = radiologist.get("/api/review-queue/", params).json()
        return [name_of[item["id"]] for item in body["results"]], body

    flagged, body = names(positive="true")
    assert flagged == ["nearest", "far_yes"]
    assert body["reviewed_today"] == 1
    assert body["count"] == 2
    assert names(positive="false")[0] == ["near_no", "far_no"]
    assert names(model_version=serving_model.version)[0] == ["nearest", "near_no", "far_no",
                                                              "far_yes"]  # fmt: skip
    assert names(model_version=serving_model.version + 1)[0] == []
    assert names(since="2999-01-01")[0] == []
    assert radiologist.get("/api/review-queue/", {"since": "yesterday"}).status_code == 400


def test_undo_puts_back_the_label_before_as_a_new_event(client_for, predicted):
    radiologist = client_for("radiologist", "dr-undo")
    scan = predicted["nearest"]
    review(radiologist, scan, "normal")

    def undo(version=None):
        if version is None:
            version = radiologist.get(f"/api/scans/{scan.pk}/").json()["review_version"]
        return radiologist.post(
            f"/api/scans/{scan.pk}/undo-review/", {"version": version}, format="json"
        )

    undone = undo()

    assert undone.status_code == 200, undone.json()
    assert (undone.json()["old_label"], undone.json()["new_label"]) == ("normal", "")
    assert undone.json()["note"].startswith("Undo of the review")
    scan.refresh_from_db()
    assert scan.confirmed_label == ""
    assert scan.confirmed_by is None
    queue = radiologist.get("/api/review-queue/").json()["results"]
    assert str(scan.pk) in [item["id"] for item in queue]  # back in the queue
    trail = radiologist.get(f"/api/scans/{scan.pk}/reviews/").json()
    assert [event["new_label"] for event in trail] == ["", "normal"]  # history kept
    assert undo(version=0).status_code == 409
    assert undo().json()["new_label"] == "normal"  # undoing the undo
    nothing = radiologist.post(
        f"/api/scans/{predicted['far_no'].pk}/undo-review/", {"version": 0}, format="json"
    )
    assert nothing.status_code == 409
    assert "no review to undo" in str(nothing.json())
    assert (
        client_for("clinician")
        .post(f"/api/scans/{scan.pk}/undo-review/", {"version": 0}, format="json")
        .status_code
        == 403
    )


def test_agreement_per_model_version_counts_confirmed_labels(
    client_for, predicted, serving_model, settings
):
    settings.KIDNEY_RECENT_AGREEMENT_WINDOW = 2
    radiologist = client_for("radiologist")
    review(radiologist, predicted["far_yes"], "stone")  # model: stone -> agrees
    review(radiologist, predicted["near_yes"], "normal")  # model: stone -> false positive
    review(radiologist, predicted["far_no"], "normal")  # model: normal -> agrees
    review(radiologist, predicted["near_no"], "stone")  # model: normal -> missed stone

    detail = radiologist.get(f"/api/models/{serving_model.id}/").json()
    agreement, recent = detail["agreement"], detail["recent_agreement"]

    assert agreement["n"] == 4
    assert agreement["sensitivity"] == 0.5
    assert agreement["specificity"] == 0.5
    assert agreement["confusion_matrix"] == {
        "classes": ["normal", "stone"],
        "rows": [[1, 1], [1, 1]],
    }
    # The newest two confirmed: a normal called normal, and a stone called normal that the
    # model still ranked above it.
    assert (recent["n"], recent["window"]) == (2, 2)
    assert recent["confusion_matrix"]["rows"] == [[1, 0], [1, 0]]
    assert (recent["sensitivity"], recent["specificity"], recent["auc"]) == (0.0, 1.0, 1.0)


SCAN = "00000000-0000-0000-0000-000000000001"
# (method, path, {role: expected status}); "upload" marks the multipart upload body.
MATRIX = [
    ("get", "/api/scans/", {"clinician": 200, "radiologist": 200, "ml_engineer": 200}),
    ("post", "/api/scans/", {"clinician": 415, "radiologist": 415, "ml_engineer": 403}),
    ("get", f"/api/scans/{SCAN}/", {"clinician": 200, "radiologist": 200, "ml_engineer": 200}),
    ("get", f"/api/scans/{SCAN}/reviews/",
     {"clinician": 200, "radiologist": 200, "ml_engineer": 200}),
    ("get", f"/api/scans/{SCAN}/image/",
     {"clinician": 200, "radiologist": 200, "ml_engineer": 200}),
    ("get", f"/api/scans/{SCAN}/heatmap.png",
     {"clinician": 404, "radiologist": 404, "ml_engineer": 404}),
    ("post", f"/api/scans/{SCAN}/review/",
     {"clinician": 403, "radiologist": 400, "ml_engineer": 403}),
    ("get", "/api/review-queue/", {"clinician": 403, "radiologist": 200, "ml_engineer": 403}),
    ("get", "/api/models/", {"clinician": 200, "radiologist": 200, "ml_engineer": 200}),
    ("get", "/api/models/{model}/", {"clinician": 200, "radiologist": 200, "ml_engineer": 200}),
    ("post", "/api/models/{model}/promote/",
     {"clinician": 403, "radiologist": 403, "ml_engineer": 409}),
    ("post", "/api/models/{model}/rollback/",
     {"clinician": 403, "radiologist": 403, "ml_engineer": 409}),
    ("get", "/api/training-runs/", {"clinician": 403, "radiologist": 403, "ml_engineer": 200}),
    ("post", "/api/training-runs/", {"clinician": 403, "radiologist": 403, "ml_engineer": 409}),
]  # fmt: skip


@pytest.mark.django_db
@pytest.mark.parametrize(("method", "path", "expected"), MATRIX)
@pytest.mark.parametrize("role", ["anonymous", "clinician", "radiologist", "ml_engineer"])
def test_role_matrix(client_for, serving_model, method, path, expected, role):
    from accounts.roles import Role
    from tests.images import phantom_png

    uploader = client_for("clinician", "matrix-owner")
    make_scan(uploader.user, image=phantom_png())
    Scan.objects.update(id=SCAN)
    client = APIClient() if role == "anonymous" else client_for(role)
    if role == "clinician":  # same organisation as the scan's uploader
        client = client_for(str(Role.CLINICIAN), "matrix-owner")

    response = getattr(client, method)(path.format(model=serving_model.id), {}, format="json")

    assert response.status_code == (401 if role == "anonymous" else expected[role]), (
        response.content
    )


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("role", "expected"),
    [("clinician", 200), ("radiologist", 200), ("ml_engineer", 302), (None, 302)],
)
def test_the_review_page_is_for_clinicians_and_radiologists(client, role, expected):
    from accounts.services import api_user_upsert

    if role:
        client.force_login(api_user_upsert(username=f"page-{role}", role=role)[0])

    response = client.get("/review/")

    assert response.status_code == expected
    if role is None:
        assert response["Location"].startswith("/accounts/login/")
    if role == "ml_engineer":  # to their own page, not a bare 403
        assert response["Location"] == "/models/"
        assert client.get("/models/").status_code == 200
    if role == "clinician":
        assert "Review queue" not in response.content.decode()  # upload only
    if role == "radiologist":
        assert "Review queue" in response.content.decode()


@pytest.mark.django_db
def test_the_review_page_says_when_the_serving_model_is_the_placeholder(client, serving_model):
    from accounts.services import api_user_upsert
    from training.models import PLACEHOLDER_NOTE

    client.force_login(api_user_upsert(username="page-reader", role="clinician")[0])
    trained = client.get("/review/").content.decode()
    serving_model.description = PLACEHOLDER_NOTE
    serving_model.save()
    placeholder = client.get("/review/").content.decode()

    assert f"Serving model {serving_model.label}" in trained
    assert "placeholder" not in trained
    assert "is a placeholder trained on synthetic phantoms" in placeholder


def test_reviewed_today_counts_scans_whose_review_stands_not_review_events(client_for, predicted):
    radiologist = client_for("radiologist", "dr-count")
    review(radiologist, predicted["nearest"], "stone")
    review(radiologist, predicted["nearest"], "normal")  # a second thought on the same scan
    review(radiologist, predicted["near_no"], "normal")
    version = radiologist.get(f"/api/scans/{predicted['near_no'].pk}/").json()["review_version"]
    radiologist.post(f"/api/scans/{predicted['near_no'].pk}/undo-review/", {"version": version},
                     format="json")  # fmt: skip

    body = radiologist.get("/api/review-queue/").json()

    assert body["reviewed_today"] == 1


def test_the_same_image_confirmed_two_ways_is_said_and_never_trained_on(client_for, serving_model):
    image = phantom_png(size=64, seed=3)
    uploads = []
    for name in ("dr-a-clinician", "dr-b-clinician"):
        clinician = client_for("clinician", name)
        response = clinician.post("/api/scans/", {"file": io.BytesIO(image)}, format="multipart")
        assert response.status_code == 202, response.json()
        uploads.append(Scan.objects.get(pk=response.json()["id"]))
    first, second = uploads
    radiologist = client_for("radiologist", "dr-one")
    colleague = client_for("radiologist", "dr-two")
    ml_engineer = client_for("ml_engineer")

    review(radiologist, first, "normal")
    agreeing = colleague.get(f"/api/scans/{second.pk}/").json()
    contradicting = review(colleague, second, "stone").json()
    waiting_for = ml_engineer.get("/api/training-runs/trigger/").json()["waiting_for"]
    started = ml_engineer.post("/api/training-runs/", {}, format="json")

    others = [(other["scan"], other["label"], other["reviewer"])
              for other in agreeing["same_image_reviews"]]  # fmt: skip
    assert others == [(str(first.pk), "normal", "dr-one")]
    assert [other["label"] for other in contradicting["same_image_reviews"]] == ["normal"]
    listed = {item["id"]: item for item in colleague.get("/api/scans/").json()["results"]}
    trail = colleague.get(f"/api/scans/{second.pk}/reviews/").json()
    assert [other["scan"] for other in listed[str(second.pk)]["same_image_reviews"]] == [
        str(first.pk)
    ]
    assert [other["label"] for other in trail[0]["same_image_reviews"]] == ["normal"]
    # Both scans are confirmed, and neither is a label to train on.
    assert Scan.objects.exclude(confirmed_label="").count() == 2
    assert any("no confirmed labels yet" in reason for reason in waiting_for)
    assert started.status_code == 409
    assert "no confirmed labels yet" in started.json()["detail"]
