"""Security settings and guards: production refuses unsafe settings, `check --deploy` is
clean, uploads are throttled, session writes need CSRF, logs carry no PHI and no tokens, and
/healthz reports the service's state."""

import logging
import os
import secrets
import subprocess
import sys

import pytest
from django.core.cache import cache
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client

from scans.models import Scan
from tests import dicom_files
from tests.conftest import REPO_ROOT, TEST_DATA_DIR
from tests.factories import make_prediction, make_scan
from tests.images import phantom_png

GOOD_SECRET = secrets.token_urlsafe(50)


def check_deploy(**environment: str) -> subprocess.CompletedProcess:
    base = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("DJANGO_") and key != "DATABASE_URL"
    }
    base.update(KIDNEY_DATA_DIR=str(TEST_DATA_DIR / "production-check"), DJANGO_ENV="production")
    return subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=REPO_ROOT,
        env={**base, **environment},
        capture_output=True,
        text=True,
        check=False,
    )


def test_production_settings_pass_check_deploy_without_warnings():
    result = check_deploy(DJANGO_SECRET_KEY=GOOD_SECRET, DJANGO_ALLOWED_HOSTS="triage.example.org")

    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


@pytest.mark.parametrize(
    ("environment", "message"),
    [
        ({}, "DJANGO_SECRET_KEY must be set"),
        ({"DJANGO_SECRET_KEY": "changeme"}, "weak or a default"),
        ({"DJANGO_SECRET_KEY": "django-insecure-" + "x" * 50}, "weak or a default"),
        ({"DJANGO_SECRET_KEY": "a" * 60}, "weak or a default"),
        ({"DJANGO_SECRET_KEY": GOOD_SECRET, "DJANGO_DEBUG": "1"}, "DJANGO_DEBUG must be off"),
        ({"DJANGO_SECRET_KEY": GOOD_SECRET, "DJANGO_ALLOWED_HOSTS": "*"}, "DJANGO_ALLOWED_HOSTS"),
    ],
    ids=["no-secret", "short-secret", "django-default-secret", "one-letter", "debug", "any-host"],
)
def test_production_refuses_to_start_with_unsafe_settings(environment, message):
    environment.setdefault("DJANGO_ALLOWED_HOSTS", "triage.example.org")

    result = check_deploy(**environment)

    assert result.returncode != 0
    assert "Refusing to start with DJANGO_ENV=production" in result.stderr
    assert message in result.stderr


@pytest.mark.django_db
def test_uploads_are_throttled_per_user(client_for, settings, django_capture_on_commit_callbacks):
    settings.KIDNEY_UPLOAD_RATE = "2/minute"
    cache.clear()
    clinician, colleague = client_for("clinician"), client_for("clinician", "colleague")

    def upload(client, seed: int):
        return client.post(
            "/api/scans/",
            {"file": SimpleUploadedFile("s.png", phantom_png(seed=seed))},
            format="multipart",
        )

    with django_capture_on_commit_callbacks():
        statuses = [upload(clinician, seed).status_code for seed in range(3)]
        refused = upload(clinician, 3)
        other_user = upload(colleague, 4)

    assert statuses == [202, 202, 429]
    assert refused.status_code == 429
    assert int(refused["Retry-After"]) > 0
    assert "throttled" in refused.json()["detail"].lower()
    assert other_user.status_code == 202
    assert Scan.objects.count() == 3
    assert clinician.get("/api/scans/").status_code == 200  # reading is not throttled


@pytest.mark.django_db
def test_session_authenticated_writes_need_the_csrf_token(client_for, serving_model):
    radiologist = client_for("radiologist").user
    scan = make_scan(radiologist, status=Scan.Status.PREDICTED)
    make_prediction(scan, serving_model, label="stone", stone=0.9)
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(radiologist)
    review = {"label": "normal", "note": "", "version": 0}

    forged = browser.post(f"/api/scans/{scan.pk}/review/", review, content_type="application/json")
    browser.get("/review/")  # the page sets the CSRF cookie
    token = browser.cookies["csrftoken"].value
    genuine = browser.post(
        f"/api/scans/{scan.pk}/review/",
        review,
        content_type="application/json",
        HTTP_X_CSRFTOKEN=token,
    )

    assert forged.status_code == 403
    assert "CSRF" in forged.json()["detail"]
    assert genuine.status_code == 200, genuine.content


@pytest.mark.django_db
def test_logs_carry_no_patient_data_and_no_tokens(
    client_for, caplog, django_capture_on_commit_callbacks
):
    client = client_for("clinician")
    token = client._credentials["HTTP_AUTHORIZATION"].split()[1]
    caplog.set_level(logging.DEBUG)

    with django_capture_on_commit_callbacks(execute=False):
        accepted = client.post(
            "/api/scans/",
            {"file": SimpleUploadedFile("Doe^Jane MRN-4471-2093.dcm", dicom_files.ct_slice())},
            format="multipart",
        )
        refused = client.post(
            "/api/scans/",
            {"file": SimpleUploadedFile("Doe^Jane.dcm", dicom_files.ct_multiframe())},
            format="multipart",
        )

    assert accepted.status_code == 202
    assert refused.status_code == 400
    # The refusal was logged, as Django logs every 4xx answer ...
    refusals = [
        record
        for record in caplog.records
        if record.name == "django.request" and getattr(record, "status_code", None) == 400
    ]
    assert [record.getMessage() for record in refusals] == ["Bad Request: /api/scans/"]
    for secret in [*dicom_files.IDENTIFYING_STRINGS, "Doe^Jane", token]:
        assert secret not in caplog.text  # ... and nothing carries patient data or the token


@pytest.mark.django_db
def test_healthz_reports_database_broker_and_serving_model(client, serving_model):
    healthy = client.get("/healthz")

    assert healthy.status_code == 200
    assert healthy.json() == {
        "status": "ok",
        "database": {"ok": True},
        "broker": {"ok": True},
        "serving_model": {"ok": True, "version": serving_model.version},
    }
    serving_model.status = serving_model.Status.RETIRED
    serving_model.save()
    unhealthy = client.get("/healthz")
    assert unhealthy.status_code == 503
    assert unhealthy.json()["serving_model"] == {"ok": False, "version": None}
