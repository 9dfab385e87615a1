"""The review page in headless Chromium: log in, upload (and the same file again), toggle the
heatmap, skip, relabel and move on without a pause; window/level, zoom, undo, ten confirms in a
row by keyboard, the layout from 1024 to 2560 px; the ML engineers' page. Screenshots of each
state go to docs/images/ (generated, git-ignored)."""

import pytest
from django.contrib.auth import get_user_model

from accounts.roles import Role
from accounts.services import api_user_upsert
from ml_core.evidence import METHOD as EVIDENCE_METHOD
from scans.models import Scan
from tests.conftest import REPO_ROOT
from tests.factories import make_prediction, make_scan
from tests.images import phantom_png

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("celery_worker_process"),
]
SCREENSHOT = REPO_ROOT / "docs" / "images" / "review-page.png"
PASSWORD = "a-long-test-password-7"


@pytest.fixture(scope="module")
def phantom_trained():
    """Trained once for the module's tests (about 25 s); each serves it as its own version."""
    from ml_core.training import train_on_phantoms

    return train_on_phantoms(input_size=64, samples=400, epochs=30, target_sensitivity=0.95)


@pytest.fixture
def phantom_model(db, phantom_trained):
    """A serving model that has learned phantoms, so that its heatmap means something."""
    from training.services import model_version_bootstrap

    return model_version_bootstrap(trained=phantom_trained, description="phantoms").to_version


def shown_scan(page) -> str:
    return page.get_attribute("#scan-image", "src").split("/")[3]


def heatmap_display(page) -> str:
    return page.eval_on_selector("#scan-heatmap", "element => getComputedStyle(element).display")


def log_in(browser, live_server, username: str, role: Role, width=1280, start="/review/"):
    user, _ = api_user_upsert(username=username, role=role)
    user.set_password(PASSWORD)
    user.save()
    page = browser.new_page(viewport={"width": width, "height": 900})
    page.goto(f"{live_server.url}{start}")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    return user, page


def test_a_radiologist_uploads_toggles_the_heatmap_skips_and_relabels_without_a_pause(
    browser, live_server, phantom_model, tmp_path
):
    uploads = []
    for seed in (4, 5):
        upload = tmp_path / f"slice-{seed}.png"
        upload.write_bytes(phantom_png(size=128, with_stone=True, seed=seed))
        uploads.append(upload)

    _, page = log_in(browser, live_server, "dr-grey", Role.RADIOLOGIST)
    page.wait_for_url("**/review/")
    assert "never replace" in page.inner_text(".notice")
    assert "dicom" in page.get_attribute("#upload-file", "accept")

    for upload in uploads:
        page.set_input_files("#upload-file", str(upload))
        page.click("#upload-form button")
        page.wait_for_function(
            "document.getElementById('upload-status').textContent.includes('predicted')",
            timeout=60_000,
        )
    assert "model v1" in page.inner_text("#upload-status")
    page.set_input_files("#upload-file", str(uploads[0]))  # the same file again
    page.click("#upload-form button")
    page.wait_for_function(
        "document.getElementById('upload-status').textContent.startsWith('Already uploaded')"
    )
    assert "{" not in page.inner_text("#upload-status")  # a sentence, not the scan's JSON

    page.goto(f"{live_server.url}/review/")  # the queue now holds both scans
    page.wait_for_selector("#current:not([hidden])")
    page.wait_for_function("document.getElementById('scan-heatmap').naturalWidth > 0")
    assert f"Evidence map ({EVIDENCE_METHOD})" in page.inner_text("#heatmap-note")
    assert page.inner_text("#model-label").startswith("Model: ")
    assert "NaN" not in page.inner_text("#model-meta")
    first = shown_scan(page)
    page.click("h2")  # keys act as shortcuts outside the note field
    page.keyboard.press("h")
    hidden = heatmap_display(page)
    page.keyboard.press("h")
    shown = heatmap_display(page)
    page.keyboard.press("n")
    page.wait_for_function(f"!document.getElementById('scan-image').src.includes('{first}')")
    second = shown_scan(page)

    page.fill("#note", "focus in the left kidney")
    page.click("h2")
    page.keyboard.press("2")  # relabel as the second class, stone: the next scan at once
    page.wait_for_function(
        "document.getElementById('review-status').textContent.startsWith('Saved: stone')"
    )
    next_scan = shown_scan(page)
    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOT), full_page=True)

    assert (hidden, shown) == ("none", "block")
    assert second != first
    assert next_scan == first  # the one skipped, now the only one waiting
    event = get_user_model().objects.get(username="dr-grey").review_events.get()
    assert str(event.scan_id) == second
    assert (event.old_label, event.new_label) == ("", "stone")
    assert event.note == "focus in the left kidney"
    assert event.scan.confirmed_label == "stone"


def test_an_ml_engineer_lands_on_the_models_page_and_can_start_a_run(
    browser, live_server, phantom_model
):
    _, page = log_in(browser, live_server, "ml-ada", Role.ML_ENGINEER, width=1024, start="/")
    page.wait_for_url("**/models/")
    page.wait_for_selector("#version-1")
    row = page.inner_text("#version-1")
    assert "serving" in row
    assert "no confirmed labels yet" in row
    assert "bootstrap: overridden" in row
    page.click("#start-run")
    page.wait_for_function("document.getElementById('start-status').textContent !== ''")
    assert "no confirmed labels" in page.inner_text("#start-status")
    assert "The next run waits for" in page.inner_text("#trigger-status")
    assert page.is_hidden("#refusal-alert")
    page.screenshot(path=str(SCREENSHOT.with_name("models-page.png")), full_page=True)


def queued_scans(model, count: int) -> list[Scan]:
    """Predicted scans awaiting review, as the worker would leave them."""
    uploader, _ = api_user_upsert(username="uploader", role=Role.CLINICIAN)
    scans = []
    for index in range(count):
        stone = (index % 5) / 5 + 0.1
        scan = make_scan(uploader, image=phantom_png(size=96, seed=100 + index),
                         status=Scan.Status.PREDICTED)  # fmt: skip
        make_prediction(scan, model, label="stone" if stone >= model.threshold else "normal",
                        stone=stone)  # fmt: skip
        scans.append(scan)
    return scans


def saved_count(page) -> int:
    return int(page.inner_text("#progress").split()[0])


def test_a_radiologist_adjusts_the_view_undoes_and_confirms_ten_in_a_row_by_keyboard(
    browser, live_server, phantom_model
):
    scans = queued_scans(phantom_model, 12)
    user, page = log_in(browser, live_server, "dr-keys", Role.RADIOLOGIST)
    page.wait_for_url("**/review/")
    page.wait_for_selector("#current:not([hidden])")
    page.wait_for_function("document.getElementById('queue-list').children.length === 12")
    assert page.inner_text("#progress") == "0 reviewed today, 12 waiting"
    images = SCREENSHOT.parent
    images.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(images / "review-queue.png"), full_page=True)

    # Window/level by dragging, zoom by the wheel, r resets.
    page.wait_for_function("document.getElementById('window-level').textContent !== ''")
    before = page.inner_text("#window-level")
    box = page.locator("#viewer").bounding_box()
    middle = (box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.mouse.move(*middle)
    page.mouse.down()
    page.mouse.move(middle[0] - 120, middle[1] + 40)
    page.mouse.up()
    page.mouse.wheel(0, -100)
    adjusted = page.inner_text("#window-level")
    page.screenshot(path=str(images / "review-window-level.png"), full_page=True)
    page.fill("#heatmap-opacity", "30")
    opacity = page.eval_on_selector("#scan-heatmap", "element => element.style.opacity")
    page.click("h2")
    page.keyboard.press("r")
    reset = page.inner_text("#window-level")

    assert before.startswith("Window 256, level 128")
    assert adjusted.startswith("Window 136, level 88")
    assert "zoom 1.3" in adjusted
    assert opacity == "0.3"
    assert reset == before

    # Relabel, then undo: a new event, the scan back in the queue and on screen.
    first = shown_scan(page)
    page.keyboard.press("1")  # normal
    page.wait_for_function(
        "document.getElementById('review-status').textContent.startsWith('Saved')"
    )
    page.keyboard.press("u")
    page.wait_for_function(
        "document.getElementById('review-status').textContent.startsWith('Undone')"
    )
    page.screenshot(path=str(images / "review-undo.png"), full_page=True)
    assert shown_scan(page) == first
    trail = list(user.review_events.order_by("created").values_list("old_label", "new_label"))
    assert trail == [("", "normal"), ("normal", "")]

    # Ten confirms in a row, each the moment the previous one is saved: no forced wait.
    for count in range(1, 11):
        page.keyboard.press("c")
        page.wait_for_function(
            f"parseInt(document.getElementById('progress').textContent) === {count + 2}"
        )
    page.screenshot(path=str(images / "review-ten-confirmed.png"), full_page=True)
    confirmed = Scan.objects.exclude(confirmed_label="")
    assert confirmed.count() == 10
    assert all(scan.confirmed_label == scan.prediction.label for scan in confirmed)
    assert page.inner_text("#progress") == "12 reviewed today, 2 waiting"
    assert {str(scan.pk) for scan in scans} >= {str(scan.pk) for scan in confirmed}


@pytest.mark.parametrize("width", [1024, 2560])
def test_the_review_workspace_fits_from_1024_to_2560_pixels(
    browser, live_server, phantom_model, width
):
    queued_scans(phantom_model, 3)
    _, page = log_in(browser, live_server, f"dr-{width}", Role.RADIOLOGIST, width=width)
    page.wait_for_selector("#current:not([hidden])")
    page.wait_for_function("document.getElementById('window-level').textContent !== ''")

    overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    viewer = page.locator("#viewer").bounding_box()
    page.screenshot(path=str(SCREENSHOT.with_name(f"review-{width}px.png")), full_page=True)

    assert overflow <= 0  # nothing runs off to the side
    assert viewer["width"] >= 300
