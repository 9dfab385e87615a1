"""The scans REST API, in the web process (the worker is exercised in test_worker.py)."""

import hashlib

import pytest
from django.conf import settings
from django.core.files.uploadedfile import SimpleUploadedFile

from scans.models import Scan
from tests import factories
from tests.images import phantom_jpeg, phantom_png


def stored_scan_files() -> list:
    folder = settings.MEDIA_ROOT / "scans"
    return sorted(folder.iterdir()) if folder.exists() else []


def upload(client, data: bytes, name: str = "slice.png"):
    return client.post("/api/scans/", {"file": SimpleUploadedFile(name, data)}, format="multipart")


@pytest.mark.django_db
def test_upload_is_accepted_stored_under_a_random_name_and_queued_after_commit(
    client_for, django_capture_on_commit_callbacks
):
    data = phantom_png(size=64)
    files_before = stored_scan_files()

    with django_capture_on_commit_callbacks() as callbacks:
        response = upload(client_for("clinician"), data, name="../../etc/Jane Doe.png")

    assert response.status_code == 202, response.content
    body = response.json()
    assert set(body) == {"id", "status", "url"}
    assert body["status"] == "queued"
    assert body["url"].endswith(f"/api/scans/{body['id']}/")
    scan = Scan.objects.get(pk=body["id"])
    assert scan.sha256 == hashlib.sha256(data).hexdigest()
    assert (scan.width, scan.height, scan.content_type) == (64, 64, "image/png")
    new_files = sorted(set(stored_scan_files()) - set(files_before))
    assert len(new_files) == 1
    assert "Jane" not in new_files[0].name
    assert new_files[0].suffix == ".png"
    assert new_files[0].read_bytes() == data
    assert len(callbacks) == 1  # one inference task, sent once the row is committed


@pytest.mark.django_db
def test_a_jpeg_export_is_accepted(client_for, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks():
        response = upload(client_for("radiologist"), phantom_jpeg(size=80), name="x.dcm")

    assert response.status_code == 202
    assert Scan.objects.get(pk=response.json()["id"]).content_type == "image/jpeg"


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("get", "/api/scans/"),
        ("post", "/api/scans/"),
        ("get", "/api/scans/00000000-0000-0000-0000-000000000000/"),
        ("get", "/api/models/"),
        ("get", "/api/models/1/"),
    ],
)
def test_anonymous_requests_get_401(method, path):
    from rest_framework.test import APIClient

    response = getattr(APIClient(), method)(path)

    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == "Token"


@pytest.mark.django_db
def test_an_ml_engineer_cannot_upload(client_for):
    response = upload(client_for("ml_engineer"), phantom_png())

    assert response.status_code == 403
    assert Scan.objects.count() == 0


@pytest.mark.django_db
def test_a_user_without_a_role_gets_403(db):
    from django.contrib.auth import get_user_model
    from rest_framework.test import APIClient

    from accounts.tokens import token_issue

    user = get_user_model().objects.create(username="no-role")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token_issue(user=user)[1]}")

    assert client.get("/api/scans/").status_code == 403
    assert upload(client, phantom_png()).status_code == 403


def make_scan(user, *, status=Scan.Status.QUEUED, label=None, model_version=None) -> Scan:
    scan = factories.make_scan(user, status=status)
    if label:
        factories.make_prediction(scan, model_version, label=label, stone=0.9)
    return scan


@pytest.mark.django_db
def test_detail_shows_the_prediction_with_version_and_threshold(client_for, serving_model):
    clinician = client_for("clinician")
    scan = make_scan(
        clinician.user, status=Scan.Status.PREDICTED, label="stone", model_version=serving_model
    )

    body = clinician.get(f"/api/scans/{scan.id}/").json()

    assert body["status"] == "predicted"
    assert body["error"] == ""
    assert body["prediction"]["label"] == "stone"
    assert body["prediction"]["probabilities"] == pytest.approx({"normal": 0.1, "stone": 0.9})
    assert body["prediction"]["model_version"] == serving_model.version
    assert body["prediction"]["threshold"] == round(serving_model.threshold, 4)


@pytest.mark.django_db
def test_list_is_paginated_and_filters_by_status_and_label(client_for, serving_model):
    radiologist = client_for("radiologist")
    user = radiologist.user
    make_scan(user)
    stone = make_scan(
        user, status=Scan.Status.PREDICTED, label="stone", model_version=serving_model
    )
    normal = make_scan(
        user, status=Scan.Status.PREDICTED, label="normal", model_version=serving_model
    )

    everything = radiologist.get("/api/scans/").json()
    predicted = radiologist.get("/api/scans/?status=predicted").json()
    stones = radiologist.get("/api/scans/?label=stone").json()

    assert everything["count"] == 3
    assert {"next", "previous", "results"} <= set(everything)
    assert {item["id"] for item in predicted["results"]} == {str(stone.id), str(normal.id)}
    assert [item["id"] for item in stones["results"]] == [str(stone.id)]
    assert radiologist.get("/api/scans/?status=lost").status_code == 400


@pytest.mark.django_db
def test_clinicians_see_their_organisations_scans_and_radiologists_see_all(client_for):
    from accounts.services import api_user_upsert

    alice = client_for("clinician", "alice")
    carol = client_for("clinician", "carol")
    bob = client_for("clinician", "bob")
    api_user_upsert(username="alice", role="clinician", organisation="North")
    api_user_upsert(username="carol", role="clinician", organisation="North")
    api_user_upsert(username="bob", role="clinician", organisation="South")
    radiologist = client_for("radiologist")
    alices = make_scan(alice.user)
    make_scan(bob.user)

    assert [item["id"] for item in carol.get("/api/scans/").json()["results"]] == [str(alices.id)]
    assert bob.get(f"/api/scans/{alices.id}/").status_code == 404
    assert radiologist.get("/api/scans/").json()["count"] == 2


@pytest.mark.django_db
def test_model_versions_are_listed_with_threshold_and_status(client_for, serving_model):
    body = client_for("clinician").get("/api/models/").json()

    assert body["count"] == 1
    version = body["results"][0]
    assert version["version"] == 1
    assert version["status"] == "serving"
    assert version["classes"] == ["normal", "stone"]
    assert version["input_size"] == 32
    assert version["threshold"] == round(serving_model.threshold, 4)


@pytest.mark.django_db
def test_openapi_schema_and_swagger_ui_are_served(client_for):
    client = client_for("clinician")

    schema = client.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    docs = client.get("/api/docs/")

    assert schema.status_code == 200
    paths = schema.json()["paths"]
    assert {"/api/scans/", "/api/scans/{id}/", "/api/models/"} <= set(paths)
    assert "202" in paths["/api/scans/"]["post"]["responses"]
    assert docs.status_code == 200
    assert b"swagger" in docs.content.lower()


@pytest.mark.django_db
def test_every_operation_documents_its_errors_and_says_what_it_does(client_for):
    schema = client_for("clinician").get(
        "/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json"
    )
    operations = {
        (method.upper(), path): operation
        for path, methods in schema.json()["paths"].items()
        for method, operation in methods.items()
    }

    descriptions = [operation.get("description", "") for operation in operations.values()]
    assert all(descriptions)
    assert len(set(descriptions)) == len(descriptions)  # each in its own words
    for (method, path), operation in operations.items():
        codes = set(operation["responses"])
        assert {"401", "403", "503"} <= codes, (method, path)
        queried = [parameter["name"] for parameter in operation.get("parameters", [])
                   if parameter["in"] == "query"]  # fmt: skip
        assert ("404" in codes) == ("{id}" in path or "page" in queried), (method, path)
        if method == "POST" or queried:
            assert "400" in codes, (method, path)
        if method == "POST":
            assert "415" in codes, (method, path)
        detail = operation["responses"]["403"]["content"]["application/json"]["schema"]
        assert detail == {"$ref": "#/components/schemas/Error"}
    assert {"413", "415", "429"} <= set(operations["POST", "/api/scans/"]["responses"])
    for conflicted in ["/api/scans/{id}/review/", "/api/scans/{id}/undo-review/",
                       "/api/models/{id}/promote/",
                       "/api/models/{id}/rollback/", "/api/training-runs/",
                       "/api/training-runs/{id}/retry/", "/api/studies/{id}/review/"]:  # fmt: skip
        assert "409" in operations["POST", conflicted]["responses"]
    assert "409" not in operations["POST", "/api/tokens/"]["responses"]


@pytest.mark.django_db
def test_the_same_bytes_from_the_same_user_return_the_existing_scan_without_inference(
    client_for, django_capture_on_commit_callbacks
):
    clinician, colleague = client_for("clinician"), client_for("clinician", "colleague")
    data = phantom_png(size=64, seed=3)
    files_before = stored_scan_files()
    with django_capture_on_commit_callbacks() as first_callbacks:
        first = upload(clinician, data)

    with django_capture_on_commit_callbacks() as again_callbacks:
        again = upload(clinician, data, name="renamed.png")
    with django_capture_on_commit_callbacks() as colleague_callbacks:
        colleague_upload = upload(colleague, data)

    assert first.status_code == 202
    assert again.status_code == 200, again.content
    assert again.json()["id"] == first.json()["id"]
    assert again.json()["status"] == "queued"
    assert len(first_callbacks) == 1
    assert again_callbacks == []
    # Another user's upload of the same bytes is that user's own scan.
    assert colleague_upload.status_code == 202
    assert len(colleague_callbacks) == 1
    assert Scan.objects.count() == 2
    assert len(set(stored_scan_files()) - set(files_before)) == 2


@pytest.mark.django_db
def test_numbers_are_rounded_for_reading(client_for, serving_model):
    clinician = client_for("clinician")
    scan = make_scan(clinician.user, status=Scan.Status.PREDICTED)
    prediction = factories.make_prediction(
        scan, serving_model, label="stone", stone=0.25795626640319824
    )
    prediction.probabilities = {"normal": 2.177e-36, "stone": 1.0}
    prediction.save()

    body = clinician.get(f"/api/scans/{scan.id}/").json()["prediction"]

    assert body["abnormal_score"] == 0.258
    assert body["probabilities"] == {"normal": 0.0, "stone": 1.0}
