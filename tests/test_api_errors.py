"""Every error under /api/ is JSON in one shape, {"detail"} plus "fields" for refused fields;
requests are held to the schema's types and bounds. Each case is one the contract test
(Schemathesis) once found answered otherwise."""

import re

import pytest

from tests.factories import make_prediction, make_scan, make_study
from tests.images import phantom_png

pytestmark = pytest.mark.django_db


def test_an_unknown_path_or_malformed_id_under_the_api_is_a_json_404(client_for):
    client = client_for("ml_engineer")

    for path in ("/api/models/-8.07e-223/", "/api/scans/not-a-uuid/image/", "/api/nothing/"):
        response = client.get(path)
        assert response.status_code == 404, path
        assert response["Content-Type"] == "application/json"
        assert response.json() == {"detail": "Not found."}


def test_pages_are_whole_numbers_from_one(client_for):
    client = client_for("clinician")

    for page in ("0", "-1", "x", "1.5"):
        refused = client.get("/api/scans/", {"page": page})
        assert refused.status_code == 400, page
        assert list(refused.json()["fields"]) == ["page"]
    past_the_last = client.get("/api/scans/", {"page": "2"})
    assert past_the_last.status_code == 404
    assert past_the_last.json()["detail"].startswith("No page 2")
    assert client.get("/api/scans/", {"page": "1"}).status_code == 200


def test_a_field_error_has_a_sentence_and_the_fields(client_for):
    response = client_for("clinician").post("/api/tokens/", {"name": "x" * 101}, format="json")

    assert response.status_code == 400
    body = response.json()
    assert body["fields"] == {"name": ["Ensure this field has no more than 100 characters."]}
    assert body["detail"] == "name: Ensure this field has no more than 100 characters."


@pytest.mark.parametrize("body", ["null", "[]", '"name"', "3"])
def test_a_json_body_must_be_an_object(client_for, body):
    response = client_for("clinician").post("/api/tokens/", body, content_type="application/json")

    assert response.status_code == 400
    assert response.json() == {"detail": "The body must be a JSON object."}


def test_json_values_must_have_their_schema_types(client_for, serving_model):
    clinician, engineer = client_for("clinician"), client_for("ml_engineer")

    name = clinician.post("/api/tokens/", {"name": 0}, format="json")
    epochs = engineer.post("/api/training-runs/", {"epochs": "5"}, format="json")
    flag = engineer.post("/api/training-runs/", {"epochs": True}, format="json")

    assert (name.status_code, name.json()["fields"]) == (400, {"name": ["Must be a string."]})
    assert (epochs.status_code, epochs.json()["fields"]) == (
        400,
        {"epochs": ["Must be a whole number."]},
    )
    assert flag.status_code == 400


def test_only_the_upload_takes_a_form_body(client_for):
    response = client_for("clinician").post("/api/tokens/", {"name": "laptop"})  # multipart

    assert response.status_code == 415
    assert "detail" in response.json()


def test_an_empty_filter_is_refused_not_ignored(client_for):
    radiologist = client_for("radiologist")

    since = radiologist.get("/api/review-queue/", {"since": ""})
    status = radiologist.get("/api/scans/", {"status": ""})
    unknown = radiologist.get("/api/scans/", {"status": "done"})

    assert (since.status_code, list(since.json()["fields"])) == (400, ["since"])
    assert (status.status_code, list(status.json()["fields"])) == (400, ["status"])
    assert (unknown.status_code, list(unknown.json()["fields"])) == (400, ["status"])


def test_state_not_request_refusals_are_conflicts(client_for, serving_model):
    radiologist = client_for("radiologist")
    scan = make_scan(radiologist.user, image=phantom_png())
    make_prediction(scan, serving_model, label="normal", stone=0.1)

    nothing_to_undo = radiologist.post(
        f"/api/scans/{scan.pk}/undo-review/", {"version": 0}, format="json"
    )
    no_labels = client_for("ml_engineer").post("/api/training-runs/", {}, format="json")

    assert nothing_to_undo.status_code == 409
    assert nothing_to_undo.json()["detail"] == "This scan has no review to undo."
    assert no_labels.status_code == 409
    assert no_labels.json()["detail"].startswith("Not started: waiting for")


def test_a_label_outside_the_service_s_classes_is_a_field_error(client_for, serving_model):
    radiologist = client_for("radiologist")
    scan = make_scan(radiologist.user, image=phantom_png())
    make_prediction(scan, serving_model, label="normal", stone=0.1)

    response = radiologist.post(
        f"/api/scans/{scan.pk}/review/", {"label": "kidney", "version": 0}, format="json"
    )

    assert response.status_code == 400
    assert list(response.json()["fields"]) == ["label"]


def test_nested_field_errors_are_named_by_their_place(client_for, serving_model):
    radiologist = client_for("radiologist")
    study, _ = make_study(radiologist.user, serving_model, [0.9, 0.1])

    response = radiologist.post(
        f"/api/studies/{study.pk}/review/",
        {"verdict": "stone", "stone_slices": ["not-a-uuid"], "version": study.review_version},
        format="json",
    )

    assert response.status_code == 400
    assert list(response.json()["fields"]) == ["stone_slices.0"]


def test_a_request_django_cannot_read_is_a_json_400_under_the_api(client_for):
    too_many = {f"p{number}": "1" for number in range(1500)}  # over Django's 1000 fields

    response = client_for("clinician").get("/api/scans/", too_many)

    assert response.status_code == 400
    assert response.json() == {"detail": "The request could not be read."}


def test_a_string_s_length_counts_its_spaces_as_the_schema_does(client_for):
    client = client_for("clinician")

    padded = client.post("/api/tokens/", {"name": " " + "x" * 100}, format="json")
    exact = client.post("/api/tokens/", {"name": "x" * 100}, format="json")

    assert padded.status_code == 400
    assert list(padded.json()["fields"]) == ["name"]
    assert exact.status_code == 201


def test_text_fields_refuse_a_nul_character_as_the_schema_says(client_for):
    client = client_for("clinician")
    schema = client.get("/api/schema/", {"format": "json"}).json()
    name = schema["components"]["schemas"]["ApiTokenIssueRequest"]["properties"]["name"]

    with_nul = client.post("/api/tokens/", {"name": "a\x00b"}, format="json")

    assert re.fullmatch(name["pattern"], "a\x00b") is None
    assert re.fullmatch(name["pattern"], "a b") is not None
    assert with_nul.status_code == 400
    assert list(with_nul.json()["fields"]) == ["name"]
