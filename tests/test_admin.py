"""Django admin: staff see scans, predictions and model versions; others are kept out."""

import re

import numpy as np
import pytest
from django.contrib.auth import get_user_model
from PIL import Image

from scans.models import Scan
from tests.factories import make_prediction, make_scan
from tests.images import phantom_png


@pytest.fixture
def stored_prediction(db, serving_model):
    user = get_user_model().objects.create(username="uploader")
    scan = make_scan(user, image=phantom_png(size=64), status=Scan.Status.PREDICTED)
    return make_prediction(scan, serving_model, label="stone", stone=0.8)


@pytest.mark.django_db
def test_staff_see_scans_with_thumbnails_and_inline_predictions(admin_client, stored_prediction):
    scan = stored_prediction.scan

    changelist = admin_client.get("/admin/scans/scan/?status__exact=predicted")
    change = admin_client.get(f"/admin/scans/scan/{scan.pk}/change/")
    thumbnail = admin_client.get(f"/admin/scans/scan/{scan.pk}/thumbnail.png")

    assert changelist.status_code == 200
    assert str(scan.pk) in changelist.content.decode()
    assert "unreviewed" in changelist.content.decode()
    scan.confirmed_label = "normal"
    scan.save()
    row = admin_client.get("/admin/scans/scan/?status__exact=predicted").content.decode()
    cells = row[row.index(str(scan.pk)) :]
    assert cells.index("stone") < cells.index("normal")  # the model's label, then the reader's
    assert change.status_code == 200
    assert "stone" in change.content.decode()
    assert thumbnail.status_code == 200
    assert thumbnail["Content-Type"] == "image/png"
    from io import BytesIO

    assert max(Image.open(BytesIO(thumbnail.content)).size) <= 160


@pytest.mark.django_db
def test_staff_search_and_filter_predictions_and_model_versions(admin_client, stored_prediction):
    predictions = admin_client.get("/admin/scans/prediction/?label=stone")
    search = admin_client.get(f"/admin/scans/scan/?q={stored_prediction.scan.sha256}")
    versions = admin_client.get("/admin/training/modelversion/?status__exact=serving")

    assert predictions.status_code == 200
    assert search.status_code == 200
    assert str(stored_prediction.scan.pk) in search.content.decode()
    assert versions.status_code == 200
    assert "serving" in versions.content.decode()


@pytest.mark.django_db
def test_non_staff_users_are_sent_to_the_admin_login(client, stored_prediction):
    user = get_user_model().objects.create_user(username="clin", password="a-long-password-1")
    client.force_login(user)

    response = client.get(f"/admin/scans/scan/{stored_prediction.scan.pk}/thumbnail.png")

    assert response.status_code == 302
    assert "/admin/login/" in response["Location"]


def staff_in_role(role: str, username: str):
    from accounts.roles import Role
    from accounts.services import api_user_upsert

    user, _ = api_user_upsert(username=username, role=Role(role))
    user.is_staff = True
    user.save()
    return user


@pytest.mark.django_db
def test_staff_radiologists_review_from_the_admin_queue_with_bulk_actions(
    client, stored_prediction
):
    scan = stored_prediction.scan
    scan.confirmed_label = ""
    scan.save()
    client.force_login(staff_in_role("radiologist", "staff-radiologist"))

    queue = client.get("/admin/scans/scanawaitingreview/")
    relabel = client.post(
        "/admin/scans/scanawaitingreview/",
        {"action": "relabel_as_normal", "_selected_action": [str(scan.pk)]},
        follow=True,
    )

    assert queue.status_code == 200
    assert str(scan.pk) in queue.content.decode()
    assert relabel.status_code == 200
    assert "Reviewed 1 scan." in relabel.content.decode()
    event = scan.review_events.get()
    assert (event.old_label, event.new_label, event.model_label) == ("", "normal", "stone")
    assert event.reviewer.username == "staff-radiologist"


@pytest.mark.django_db
def test_staff_clinicians_cannot_open_the_review_queue_or_promote(client, stored_prediction):
    client.force_login(staff_in_role("clinician", "staff-clinician"))

    assert client.get("/admin/scans/scanawaitingreview/").status_code == 403
    assert client.get("/admin/scans/scan/").status_code == 200  # they may look at scans
    assert client.get("/admin/training/modelversion/").status_code == 403


@pytest.mark.django_db
def test_staff_ml_engineers_promote_through_the_gate_from_the_admin(
    client, stored_prediction, serving_model
):
    from training.models import PromotionLog

    serving_model.status = "candidate"
    serving_model.save()
    client.force_login(staff_in_role("ml_engineer", "staff-engineer"))

    response = client.post(
        "/admin/training/modelversion/",
        {"action": "promote_through_gate", "_selected_action": [str(serving_model.pk)]},
        follow=True,
    )

    assert response.status_code == 200
    # Not enough to judge: the gate refuses, and says why.
    assert "Not enough to judge" in response.content.decode()
    assert PromotionLog.objects.get().decision == PromotionLog.Decision.NOT_JUDGED


@pytest.mark.django_db
def test_the_admin_overlays_the_heatmap_and_shows_agreement_per_version(
    admin_client, stored_prediction, serving_model
):
    from ml_core.evidence import METHOD as EVIDENCE_METHOD
    from scans.inference import heatmap_save, overlays_by_scan

    scan = stored_prediction.scan
    scan.confirmed_label = "stone"
    scan.save()
    maps = np.eye(4, dtype=np.float32)[np.newaxis]
    overlay = overlays_by_scan([scan], maps)[scan.pk]
    heatmap_save(stored_prediction, overlay)

    change = admin_client.get(f"/admin/scans/scan/{scan.pk}/change/").content.decode()
    heatmap = admin_client.get(f"/admin/scans/scan/{scan.pk}/heatmap.png")
    version = admin_client.get(f"/admin/training/modelversion/{serving_model.pk}/change/")

    assert f"/admin/scans/scan/{scan.pk}/heatmap.png" in change
    assert heatmap.status_code == 200
    assert b"".join(heatmap.streaming_content) == overlay[0]
    assert f"Evidence map by {EVIDENCE_METHOD}" in change
    assert "1 confirmed; sensitivity 1.000, specificity -" in version.content.decode()
    assert not re.search(r"\d\.\d{5,}", version.content.decode())  # numbers as people read them


@pytest.mark.django_db
def test_admin_access_grants_no_role_a_staff_ml_engineer_cannot_review(client, stored_prediction):
    from django.test import Client

    engineer = staff_in_role("ml_engineer", "staff-engineer-2")
    client.force_login(engineer)
    scan = stored_prediction.scan
    review = {"label": "normal", "note": "", "version": scan.review_version}
    browser = Client()
    browser.force_login(engineer)

    api = client.post(f"/api/scans/{scan.pk}/review/", review, content_type="application/json")
    queue = client.get("/api/review-queue/")
    admin_queue = client.get("/admin/scans/scanawaitingreview/")
    page = browser.get("/review/")

    assert api.status_code == 403
    assert queue.status_code == 403
    assert admin_queue.status_code == 403
    assert page.status_code == 302  # to the ML engineers' own page, not the review queue
    assert page["Location"] == "/models/"
    scan.refresh_from_db()
    assert scan.confirmed_label == ""


@pytest.mark.django_db
def test_the_admin_rounds_probabilities_and_thresholds(admin_client, stored_prediction):
    stored_prediction.probabilities = {"normal": 2.177e-36, "stone": 1.0}
    stored_prediction.threshold = 0.25795626640319824
    stored_prediction.save()
    scan = stored_prediction.scan

    change = admin_client.get(f"/admin/scans/scan/{scan.pk}/change/").content.decode()
    predictions = admin_client.get("/admin/scans/prediction/").content.decode()

    assert "0.258" in change
    assert "0.25795626640319824" not in change + predictions
    assert "2.177e-36" not in change
