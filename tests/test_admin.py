"""Django admin: staff see scans, predictions and model versions; others are kept out."""

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
