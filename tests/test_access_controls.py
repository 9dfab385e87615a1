"""Clinical access controls, through the login pages, the API, the admin and the commands:
password guessing is locked out, sessions end when idle, tokens expire and can be revoked,
and every read of patient data is in the access audit."""

import logging
import time
from datetime import timedelta

import numpy as np
import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.test import Client
from django.utils import timezone

from accounts.models import ApiToken
from accounts.roles import Role
from accounts.services import api_user_upsert
from audit.models import AccessEvent
from scans.models import Scan
from tests.commands import run
from tests.factories import make_prediction, make_scan
from tests.images import phantom_png

PASSWORD = "a-long-test-password-7"
WRONG = "not-the-password"


@pytest.fixture
def radiologist(db):
    user, _ = api_user_upsert(username="dr-lock", role=Role.RADIOLOGIST)
    user.set_password(PASSWORD)
    user.save()
    return user


def log_in(client, username: str, password: str, *, path="/accounts/login/", address="10.0.0.1"):
    return client.post(path, {"username": username, "password": password}, REMOTE_ADDR=address)


def logged_in(response) -> bool:
    return response.status_code == 302 and "sessionid" in response.cookies


# Password guessing ---------------------------------------------------------------------------


@pytest.mark.django_db
def test_an_account_is_locked_after_the_failure_limit_and_released_after_the_cool_off(
    radiologist, settings, caplog
):
    settings.AXES_FAILURE_LIMIT = 3
    # Failures older than the cool-off no longer count: long enough that three attempts on a
    # loaded machine stay within it.
    settings.AXES_COOLOFF_TIME = timedelta(seconds=6)
    caplog.set_level(logging.INFO)
    client = Client()

    answers = [log_in(client, "dr-lock", WRONG).status_code for _ in range(3)]
    locked = log_in(client, "dr-lock", PASSWORD)
    time.sleep(6.5)
    released = log_in(client, "dr-lock", PASSWORD)

    assert answers == [200, 200, 429]  # the form again twice, then the lockout
    assert locked.status_code == 429
    assert "Too many failed logins" in locked.content.decode()
    assert logged_in(released)
    assert "dr-lock" in caplog.text
    assert "lock" in caplog.text.lower()
    assert WRONG not in caplog.text
    assert PASSWORD not in caplog.text


@pytest.mark.django_db
def test_the_admin_login_is_locked_too_and_staff_lift_a_lockout_early(radiologist, settings):
    settings.AXES_FAILURE_LIMIT = 3
    client = Client()

    for _ in range(3):
        log_in(client, "dr-lock", WRONG, path="/admin/login/")
    locked = log_in(client, "dr-lock", PASSWORD)
    call_command("axes_reset_username", "dr-lock")
    lifted = log_in(client, "dr-lock", PASSWORD)

    assert locked.status_code == 429
    assert logged_in(lifted)


@pytest.mark.django_db
def test_one_reader_mistyping_at_a_shared_workstation_locks_only_that_reader(radiologist, settings):
    settings.AXES_FAILURE_LIMIT = 3
    colleague, _ = api_user_upsert(username="dr-colleague", role=Role.RADIOLOGIST)
    colleague.set_password(PASSWORD)
    colleague.save()
    admin = get_user_model().objects.create_superuser("admin-lift", password=PASSWORD)

    for _ in range(3):
        log_in(Client(), "dr-lock", WRONG)
    locked = log_in(Client(), "dr-lock", PASSWORD)
    colleague_here = log_in(Client(), "dr-colleague", PASSWORD)
    admin_here = log_in(Client(), admin.username, PASSWORD, path="/admin/login/")
    still_locked = log_in(Client(), "dr-lock", PASSWORD)  # the others' successes reset nothing

    assert locked.status_code == 429
    assert "dr-lock" in locked.content.decode()
    assert logged_in(colleague_here)
    assert logged_in(admin_here)
    assert still_locked.status_code == 429


@pytest.mark.django_db
def test_one_client_address_guessing_many_accounts_is_locked(radiologist, settings):
    settings.AXES_FAILURE_LIMIT = 3
    settings.KIDNEY_LOGIN_ADDRESS_FAILURE_LIMIT = 6
    client = Client()

    for name in ("alice", "bob", "carol", "dave", "erin"):
        log_in(client, name, WRONG, address="10.9.9.9")
    before_the_limit = log_in(Client(), "dr-lock", PASSWORD, address="10.9.9.9")
    log_in(client, "frank", WRONG, address="10.9.9.9")
    from_there = log_in(client, "dr-lock", PASSWORD, address="10.9.9.9")
    elsewhere = log_in(Client(), "dr-lock", PASSWORD, address="10.1.1.1")

    assert logged_in(before_the_limit)  # five names, one failure each: nobody locked yet
    assert from_there.status_code == 429
    assert logged_in(elsewhere)


# Sessions -----------------------------------------------------------------------------------


@pytest.mark.django_db
def test_the_pages_own_polling_does_not_keep_a_session_alive(radiologist, settings):
    settings.SESSION_COOKIE_AGE = 2
    client = Client()
    log_in(client, "dr-lock", PASSWORD)

    polls = []
    for _ in range(3):  # polling for a heatmap, past the idle time
        polls.append(client.get("/api/review-queue/", HTTP_X_BACKGROUND="1"))
        time.sleep(0.9)
    after = client.get("/accounts/session/")

    assert [poll.status_code for poll in polls[:2]] == [200, 200]
    assert all("sessionid" not in poll.cookies for poll in polls)
    assert after.status_code == 401


@pytest.mark.django_db
def test_a_session_ends_after_the_idle_time_and_at_browser_close(radiologist, settings):
    settings.SESSION_COOKIE_AGE = 2
    client = Client()

    login = log_in(client, "dr-lock", PASSWORD)
    time.sleep(1.2)
    active = client.get("/review/")  # a request restarts the idle time
    time.sleep(1.2)
    still_active = client.get("/accounts/session/")
    time.sleep(2.5)
    idle_page = client.get("/review/")
    idle_api = client.get("/api/review-queue/")
    idle_check = client.get("/accounts/session/")

    cookie = login.cookies["sessionid"]
    assert not cookie["expires"]
    assert not cookie["max-age"]
    assert active.status_code == 200
    assert 'data-session-idle-seconds="2"' in active.content.decode()
    assert still_active.json() == {"idle_seconds": 2}
    assert idle_page.status_code == 302
    assert idle_page["Location"].startswith("/accounts/login/")
    assert idle_api.status_code == 401
    assert idle_check.status_code == 401


# Tokens -------------------------------------------------------------------------------------


def api(key: str):
    from rest_framework.test import APIClient

    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    return client


@pytest.mark.django_db
def test_an_expired_token_gets_401_saying_so(settings):
    settings.KIDNEY_TOKEN_DAYS = 0
    key = run("create_api_user", "old-client", "--role", "clinician").split()[-1]

    response = api(key).get("/api/scans/")

    assert response.status_code == 401
    assert "expired" in response.json()["detail"]
    assert response["WWW-Authenticate"] == "Token"


@pytest.mark.django_db
def test_a_user_lists_issues_and_revokes_their_own_tokens_only():
    first = run("create_api_user", "poller", "--role", "clinician").split()[-1]
    other = run("create_api_user", "someone-else", "--role", "clinician").split()[-1]
    client = api(first)

    issued = client.post("/api/tokens/", {"name": "new laptop"}, format="json")
    second = issued.json()["key"]
    listed = api(second).get("/api/tokens/").json()["results"]
    old_id = next(token["id"] for token in listed if token["name"] == "create_api_user")
    other_id = api(other).get("/api/tokens/").json()["results"][0]["id"]
    revoked = api(second).delete(f"/api/tokens/{old_id}/")
    not_theirs = api(second).delete(f"/api/tokens/{other_id}/")

    assert issued.status_code == 201
    assert issued.json()["status"] == "active"
    assert [token["name"] for token in listed] == ["new laptop", "create_api_user"]
    assert all("key" not in token and token["prefix"] for token in listed)
    assert revoked.status_code == 204
    assert not_theirs.status_code == 404
    refused = api(first).get("/api/scans/")
    assert refused.status_code == 401
    assert "revoked" in refused.json()["detail"]
    assert api(second).get("/api/scans/").status_code == 200
    assert api(other).get("/api/scans/").status_code == 200
    remaining = [token["id"] for token in api(second).get("/api/tokens/").json()["results"]]
    assert old_id not in remaining
    assert api(second).get(f"/api/tokens/{old_id}/").status_code == 404
    assert ApiToken.objects.get(pk=old_id).revoked is not None


@pytest.mark.django_db
def test_a_deactivated_user_s_tokens_stop_at_once():
    key = run("create_api_user", "departed", "--role", "clinician").split()[-1]
    get_user_model().objects.filter(username="departed").update(is_active=False)

    response = api(key).get("/api/scans/")

    assert response.status_code == 401
    assert "inactive" in response.json()["detail"]


@pytest.mark.django_db
def test_create_api_user_rotates_with_revoke_others():
    old = run("create_api_user", "rotated", "--role", "clinician").split()[-1]
    kept = run("create_api_user", "rotated", "--role", "clinician").split()[-1]
    fresh = run("create_api_user", "rotated", "--role", "clinician", "--revoke-others").split()[-1]

    assert len({old, kept, fresh}) == 3
    assert api(old).get("/api/scans/").status_code == 401
    assert api(kept).get("/api/scans/").status_code == 401
    assert api(fresh).get("/api/scans/").status_code == 200


@pytest.mark.django_db
def test_keys_are_stored_only_as_digests():
    from accounts.models import ApiToken

    key = run("create_api_user", "stored", "--role", "clinician").split()[-1]

    token = ApiToken.objects.get(user__username="stored")
    assert key not in {token.digest, token.prefix, token.name}
    assert token.prefix == key[:8]


# The access audit ---------------------------------------------------------------------------


@pytest.fixture
def predicted_scan(db, serving_model):
    from scans.inference import heatmap_save, overlays_by_scan

    uploader = get_user_model().objects.create(username="uploader")
    scan = make_scan(uploader, image=phantom_png(size=64), status=Scan.Status.PREDICTED)
    prediction = make_prediction(scan, serving_model, label="stone", stone=0.8)
    maps = np.eye(4, dtype=np.float32)[np.newaxis]
    heatmap_save(prediction, overlays_by_scan([scan], maps)[scan.pk])
    return scan


def read(client, path: str):
    """GET as a client does: a streamed image or heatmap is read to the end."""
    response = client.get(path)
    if response.streaming:
        b"".join(response.streaming_content)
    return response


def audit_rows() -> list[tuple[str, str, str]]:
    return [
        (event.username, event.kind, event.scan_ids)
        for event in AccessEvent.objects.order_by("at", "pk")
    ]


@pytest.mark.django_db
def test_each_api_read_of_patient_data_is_one_audit_row(client_for, predicted_scan):
    radiologist = client_for("radiologist", "dr-audit")
    scan_id = str(predicted_scan.pk)

    answers = [
        read(radiologist, f"/api/scans/{scan_id}/"),
        read(radiologist, f"/api/scans/{scan_id}/image/"),
        read(radiologist, f"/api/scans/{scan_id}/heatmap.png"),
        read(radiologist, f"/api/scans/{scan_id}/reviews/"),
        read(radiologist, "/api/scans/"),
        read(radiologist, "/api/review-queue/"),
    ]

    assert [answer.status_code for answer in answers] == [200] * 6
    assert audit_rows() == [
        ("dr-audit", "record", scan_id),
        ("dr-audit", "image", scan_id),
        ("dr-audit", "heatmap", scan_id),
        ("dr-audit", "review_trail", scan_id),
        ("dr-audit", "list", scan_id),
        ("dr-audit", "list", scan_id),
    ]
    event = AccessEvent.objects.earliest("at")
    assert event.client_address == "127.0.0.1"
    assert event.path == f"/api/scans/{scan_id}/"


@pytest.mark.django_db
def test_a_refused_read_is_not_audited(client_for, predicted_scan):
    outsider = client_for("clinician", "other-hospital")  # not the uploader's organisation
    scan_id = predicted_scan.pk

    answers = [
        outsider.get(f"/api/scans/{scan_id}/").status_code,
        outsider.get(f"/api/scans/{scan_id}/image/").status_code,
        Client().get(f"/api/scans/{scan_id}/heatmap.png").status_code,
        client_for("clinician", "clin-b").get("/api/review-queue/").status_code,
    ]

    assert answers == [404, 404, 401, 403]
    assert audit_rows() == []


@pytest.mark.django_db
def test_admin_reads_are_audited_and_the_audit_is_read_only(admin_client, predicted_scan):
    scan_id = str(predicted_scan.pk)

    admin_client.get("/admin/scans/scan/")
    admin_client.get(f"/admin/scans/scan/{scan_id}/change/")
    admin_client.get(f"/admin/scans/scan/{scan_id}/thumbnail.png")
    read(admin_client, f"/admin/scans/scan/{scan_id}/heatmap.png")
    kinds = [kind for _, kind, _ in audit_rows()]
    event = AccessEvent.objects.first()
    audit_list = admin_client.get(f"/admin/audit/accessevent/?kind__exact=image&q={scan_id}")
    change = admin_client.post(f"/admin/audit/accessevent/{event.pk}/change/", {"username": "x"})
    delete = admin_client.post(f"/admin/audit/accessevent/{event.pk}/delete/", {"post": "yes"})

    assert kinds == ["list", "record", "image", "heatmap"]
    assert audit_list.status_code == 200
    assert "1 access event" in audit_list.content.decode()
    assert change.status_code == 403
    assert delete.status_code == 403
    assert AccessEvent.objects.count() == 4  # reading the audit is not a read of a scan
    with pytest.raises(ValueError, match="append-only"):
        event.save()


@pytest.mark.django_db
def test_events_older_than_the_retention_time_expire(client_for, predicted_scan, settings):
    settings.KIDNEY_AUDIT_RETENTION_DAYS = 30
    radiologist = client_for("radiologist", "dr-keep")
    radiologist.get(f"/api/scans/{predicted_scan.pk}/")
    AccessEvent.objects.create(
        username="dr-old", kind="record", scan_ids=str(predicted_scan.pk), path="/old",
        at=timezone.now() - timedelta(days=31),
    )  # fmt: skip

    from audit.tasks import expire_access_events

    deleted = expire_access_events.apply().get()

    assert deleted == 1
    assert [username for username, _, _ in audit_rows()] == ["dr-keep"]


@pytest.mark.django_db(transaction=True)
def test_a_guessing_script_gets_the_failure_limit_of_100_passwords_checked(
    live_server, radiologist, settings
):
    """bench/login_guessing.py, black box over HTTP, against the default limit."""
    import json
    import subprocess
    import sys

    from tests.conftest import REPO_ROOT

    finished = subprocess.run(
        [sys.executable, "bench/login_guessing.py", "--url", live_server.url,
         "--username", "dr-lock", "--attempts", "100"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=300, check=True,
    )  # fmt: skip
    result = json.loads(finished.stdout.splitlines()[-1])

    assert result["evaluated"] == settings.AXES_FAILURE_LIMIT - 1
    assert result["first_refused_at"] == settings.AXES_FAILURE_LIMIT
    assert result["refused"] == 100 - result["evaluated"]


@pytest.mark.django_db(transaction=True)
def test_the_review_page_warns_before_logoff_and_says_what_was_not_sent(
    browser, live_server, radiologist, serving_model, settings
):
    settings.SESSION_COOKIE_AGE = 8  # the page warns from 2 s before the end
    scan = make_scan(radiologist, image=phantom_png(size=64), status=Scan.Status.PREDICTED)
    make_prediction(scan, serving_model, label="stone", stone=0.8)
    page = browser.new_page()
    page.goto(f"{live_server.url}/review/")
    page.fill("input[name=username]", "dr-lock")
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_selector("#current:not([hidden])")

    page.wait_for_selector("#session-warning:not([hidden]) button", timeout=15_000)
    warning = page.inner_text("#session-warning")
    page.click("#session-warning button")  # stay logged in
    page.wait_for_selector("#session-warning", state="hidden")
    page.fill("#note", "left kidney, 4 mm")
    page.click("h2")  # leave the note field so keys act as shortcuts
    page.wait_for_function(
        "document.getElementById('session-warning').textContent.includes('logged out after')",
        timeout=15_000,
    )
    ended = page.inner_text("#session-warning")
    page.keyboard.press("1")  # a review sent after the end
    page.wait_for_function("document.getElementById('review-status').textContent.length > 0")

    assert "You will be logged out in" in warning
    assert "left kidney, 4 mm" in ended
    assert "Log in again" in ended
    assert "Not saved: your session has ended" in page.inner_text("#review-status")
    scan.refresh_from_db()
    assert scan.confirmed_label == ""


@pytest.mark.django_db
def test_a_failing_audit_write_never_fails_the_read(client_for, predicted_scan, caplog):
    from django.db import connection

    radiologist = client_for("radiologist", "dr-fault")
    with connection.cursor() as cursor:  # rolled back with the test's transaction
        cursor.execute("DROP TABLE audit_accessevent")

    response = radiologist.get(f"/api/scans/{predicted_scan.pk}/")

    assert response.status_code == 200
    assert response.json()["id"] == str(predicted_scan.pk)
    assert "Could not record 1 reads in the access audit" in caplog.text


@pytest.mark.django_db
def test_staff_without_the_audit_permission_cannot_read_the_audit(client):
    user, _ = api_user_upsert(username="staff-radiologist", role=Role.RADIOLOGIST)
    user.is_staff = True
    user.save()
    client.force_login(user)

    assert client.get("/admin/audit/accessevent/").status_code == 403


@pytest.mark.django_db
def test_a_read_is_recorded_once_its_response_is_delivered(client_for, predicted_scan):
    radiologist = client_for("radiologist", "dr-stream")

    image = radiologist.get(f"/api/scans/{predicted_scan.pk}/image/")
    before_delivery = AccessEvent.objects.count()
    delivered = b"".join(image.streaming_content)

    assert delivered.startswith(b"\x89PNG")
    assert before_delivery == 0  # writing the audit never delays the read
    assert audit_rows() == [("dr-stream", "image", str(predicted_scan.pk))]
