"""The review page in headless Chromium: log in, upload, see the prediction, relabel, see
the audit entry. Saves docs/images/review-page.png (generated, git-ignored)."""

import pytest
from django.contrib.auth import get_user_model

from accounts.roles import Role
from accounts.services import api_user_upsert
from tests.conftest import REPO_ROOT
from tests.images import phantom_png

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("celery_worker_process"),
]
SCREENSHOT = REPO_ROOT / "docs" / "images" / "review-page.png"
PASSWORD = "a-long-test-password-7"


@pytest.fixture
def phantom_model(db):
    """A serving model that has learned phantoms, so that its heatmap means something."""
    from ml_core.training import train_on_phantoms
    from training.services import model_version_bootstrap

    trained = train_on_phantoms(input_size=64, samples=400, epochs=30, target_sensitivity=0.95)
    return model_version_bootstrap(trained=trained, description="phantoms").to_version


def test_a_radiologist_uploads_sees_the_prediction_relabels_and_sees_the_audit_entry(
    browser, live_server, phantom_model, tmp_path
):
    user, _ = api_user_upsert(username="dr-grey", role=Role.RADIOLOGIST)
    user.set_password(PASSWORD)
    user.save()
    upload = tmp_path / "slice.png"
    upload.write_bytes(phantom_png(size=128, with_stone=True, seed=4))
    page = browser.new_page(viewport={"width": 1200, "height": 800})

    page.goto(f"{live_server.url}/review/")
    page.fill("input[name=username]", "dr-grey")
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url("**/review/")
    assert "never replace" in page.inner_text(".notice")

    page.set_input_files("#upload-file", str(upload))
    page.click("#upload-form button")
    page.wait_for_function(
        "document.getElementById('upload-status').textContent.includes('predicted')",
        timeout=60_000,
    )
    page.wait_for_selector("#current:not([hidden])")
    page.wait_for_function("document.getElementById('scan-heatmap').naturalWidth > 0")
    assert page.inner_text("#model-label").startswith("Model: ")
    assert "model v1" in page.inner_text("#upload-status")
    assert "NaN" not in page.inner_text("#model-meta")

    page.fill("#note", "focus in the left kidney")
    page.click("#app")  # leave the note field so keys act as shortcuts
    page.keyboard.press("2")  # relabel as the second class, stone
    page.wait_for_selector("#audit li")
    entry = page.inner_text("#audit li")
    assert "dr-grey" in entry
    assert "unreviewed → stone" in entry
    assert "focus in the left kidney" in entry
    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOT), full_page=True)

    scan = get_user_model().objects.get(username="dr-grey").review_events.get().scan
    assert scan.confirmed_label == "stone"
