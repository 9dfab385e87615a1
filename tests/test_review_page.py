"""The review page in headless Chromium: log in, upload (and the same file again), toggle the
heatmap, skip, relabel and move on without a pause; window/level, zoom, undo, ten confirms in a
row by keyboard, the layout from 1024 to 2560 px; the ML engineers' page. Screenshots of each
state go to docs/images/ (generated, git-ignored)."""

import itertools
import time

import numpy as np
import pytest
from django.contrib.auth import get_user_model
from django.utils import timezone
from PIL import Image

from accounts.roles import Role
from accounts.services import api_user_upsert
from ml_core.evidence import METHOD as EVIDENCE_METHOD
from scans.models import Scan
from tests.conftest import REPO_ROOT
from tests.dicom_files import ct_slice
from tests.factories import make_prediction, make_scan
from tests.images import encode, phantom_png
from training.models import ModelVersion

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
    """The scan whose slice is drawn on the canvas."""
    return page.get_attribute("#scan-canvas", "data-scan")


def heatmap_display(page) -> str:
    return page.eval_on_selector("#scan-heatmap", "element => getComputedStyle(element).display")


def log_in(browser, live_server, username: str, role: Role, width=1280, start="/review/"):
    user, _ = api_user_upsert(username=username, role=role)
    user.set_password(PASSWORD)
    user.save()
    page = browser.new_context(viewport={"width": width, "height": 900}).new_page()
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

    for count, upload in enumerate(uploads, start=1):
        page.set_input_files("#upload-file", str(upload))
        page.click("#upload-form button")
        page.wait_for_function(
            "document.getElementById('upload-status').textContent.includes('predicted')",
            timeout=60_000,
        )
        # Each upload joins the queue list at once; the scan being read stays on screen.
        page.wait_for_function(f"document.getElementById('queue-list').children.length === {count}")
        if count == 1:
            page.wait_for_selector("#current:not([hidden])")
            first_shown = shown_scan(page)
    assert "model v1" in page.inner_text("#upload-status")
    assert page.inner_text("#progress").endswith("2 waiting")
    page.set_input_files("#upload-file", str(uploads[0]))  # the same file again
    page.click("#upload-form button")
    page.wait_for_function(
        "document.getElementById('upload-status').textContent.startsWith('Already uploaded')"
    )
    assert "{" not in page.inner_text("#upload-status")  # a sentence, not the scan's JSON

    page.wait_for_function("document.getElementById('scan-heatmap').naturalWidth > 0")
    assert f"Evidence map ({EVIDENCE_METHOD})" in page.inner_text("#heatmap-note")
    assert page.inner_text("#model-label").startswith("Model: ")
    assert "NaN" not in page.inner_text("#model-meta")
    first = shown_scan(page)
    assert first == first_shown
    page.click("h2")  # keys act as shortcuts outside the note field
    page.keyboard.press("h")
    hidden = heatmap_display(page)
    page.keyboard.press("h")
    shown = heatmap_display(page)
    page.keyboard.press("n")
    page.wait_for_function(f"document.getElementById('scan-canvas').dataset.scan !== '{first}'")
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


def test_the_models_page_counts_what_judged_a_version_logs_not_judged_and_follows_its_run(
    browser, live_server, phantom_model, tiny_model_artifact, client_for, settings
):
    settings.KIDNEY_SPLIT_GAP = 1
    settings.KIDNEY_EVALUATION_MIN_PER_CLASS = 3
    settings.KIDNEY_RECENT_EVALUATION_MIN_PER_CLASS = 3
    flattering = {"n": {"normal": 1, "stone": 1}, "sensitivity": 1.0, "specificity": 1.0,
                  "auc": 1.0}  # fmt: skip
    candidate = ModelVersion.objects.create(
        version=2, **{**tiny_model_artifact, "metrics": {"validation": flattering}}
    )
    engineer = client_for("ml_engineer", "ml-gate")
    not_judged = engineer.post(f"/api/models/{candidate.pk}/promote/")
    decisions = engineer.get(f"/api/models/{candidate.pk}/").json()["decisions"]
    radiologist = client_for("radiologist", "dr-labels").user
    labelled = []
    for index, label in enumerate(["normal", "stone"] * 20):
        labelled.append(make_scan(radiologist, status=Scan.Status.IMPORTED, confirmed_label=label,
                                  confirmed_at=timezone.now(),
                                  image=phantom_png(size=32, with_stone=label == "stone",
                                                    seed=300 + index)))  # fmt: skip
    # An image the run trains on is gone from storage: the worker's run fails reading it.
    labelled[0].file.storage.delete(labelled[0].file.name)

    _, page = log_in(browser, live_server, "ml-page", Role.ML_ENGINEER, width=1400, start="/")
    page.wait_for_selector("#version-2")
    row = page.inner_text("#version-2")
    page.click("#start-run")
    page.wait_for_function("document.getElementById('start-status').textContent !== ''")
    queued = page.inner_text("#start-status")
    page.wait_for_function(
        "/Run \\d+ failed/.test(document.getElementById('start-status').textContent)",
        timeout=120_000,
    )

    assert not_judged.status_code == 409
    assert decisions[0]["decision"] == "not_judged"
    assert decisions[0]["gate"]["detail"].startswith("Not enough to judge")
    assert "1 normal, 1 stone" in row
    assert "too few to judge" in row
    assert "1.000" not in row
    assert "Not enough to judge" in row  # the last decision, not a dash
    assert queued.endswith("queued.")


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

    assert before.startswith("Window 255, level 128")
    assert adjusted.startswith("Window 135, level 88")
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
            f"parseInt(document.getElementById('progress').textContent) === {count}"
        )
    page.screenshot(path=str(images / "review-ten-confirmed.png"), full_page=True)
    confirmed = Scan.objects.exclude(confirmed_label="")
    assert confirmed.count() == 10
    assert all(scan.confirmed_label == scan.prediction.label for scan in confirmed)
    assert page.inner_text("#progress") == "10 reviewed today, 2 waiting"  # scans, not events
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


# What a first real use of the page found (issue 25) -------------------------------------------


def viewer_middle(page) -> tuple[float, float]:
    box = page.locator("#viewer").bounding_box()
    return box["x"] + box["width"] / 2, box["y"] + box["height"] / 2


def drag(page, start, by, *, shift=False):
    if shift:
        page.keyboard.down("Shift")
    page.mouse.move(*start)
    page.mouse.down()
    page.mouse.move(start[0] + by[0] / 2, start[1] + by[1] / 2)
    page.mouse.move(start[0] + by[0], start[1] + by[1])
    page.mouse.up()
    if shift:
        page.keyboard.up("Shift")


def test_window_level_drags_over_the_evidence_map_as_without_it_and_ends_on_release(
    browser, live_server, phantom_model
):
    queued_scans(phantom_model, 2)
    _, page = log_in(browser, live_server, "dr-drag", Role.RADIOLOGIST, width=1400)
    page.wait_for_function("document.getElementById('scan-heatmap').naturalWidth > 0",
                           timeout=60_000)  # fmt: skip
    assert heatmap_display(page) == "block"  # the overlay is shown, as by default
    middle = viewer_middle(page)

    drag(page, middle, (-120, 40))
    with_overlay = page.inner_text("#window-level")
    page.mouse.move(middle[0] + 150, middle[1] - 150)  # no button pressed: nothing changes
    after_release = page.inner_text("#window-level")
    page.keyboard.press("r")
    page.keyboard.press("h")  # the same drag with the overlay hidden
    drag(page, middle, (-120, 40))
    without_overlay = page.inner_text("#window-level")
    first = shown_scan(page)
    page.keyboard.press("n")
    page.wait_for_function(f"document.getElementById('scan-canvas').dataset.scan !== '{first}'")
    next_scan = page.inner_text("#window-level")

    assert with_overlay.startswith("Window 135, level 88")
    assert next_scan == with_overlay  # the reader's window carries over to the next slice
    assert after_release == with_overlay
    assert without_overlay == with_overlay


def canvas_point_under(page, x: float, y: float) -> tuple[float, float]:
    """The slice's pixel under a point of the page."""
    return tuple(page.evaluate(
        """([x, y]) => { const canvas = document.getElementById('scan-canvas');
        const box = canvas.getBoundingClientRect();
        return [(x - box.left) / box.width * canvas.width,
                (y - box.top) / box.height * canvas.height]; }""",
        [x, y],
    ))  # fmt: skip


def test_zoom_keeps_the_point_under_the_pointer_and_shift_drag_pans_with_the_slice_on_screen(
    browser, live_server, phantom_model
):
    queued_scans(phantom_model, 1)
    _, page = log_in(browser, live_server, "dr-zoom", Role.RADIOLOGIST, width=1400)
    page.set_viewport_size({"width": 1400, "height": 1000})
    page.wait_for_function("document.getElementById('window-level').textContent !== ''")
    viewer = page.locator("#viewer").bounding_box()
    pointer = (viewer["x"] + viewer["width"] * 0.25, viewer["y"] + viewer["height"] * 0.3)
    under_before = canvas_point_under(page, *pointer)
    page.mouse.move(*pointer)
    page.mouse.wheel(0, 200)  # at 1x there is nothing to zoom out of: the page scrolls
    page.wait_for_function("window.scrollY > 0")
    unzoomed = page.inner_text("#window-level")
    page.evaluate("window.scrollTo(0, 0)")

    for _ in range(3):
        page.mouse.wheel(0, -100)
    page.wait_for_function(
        "document.getElementById('window-level').textContent.includes('zoom 2.0')"
    )
    under_after = canvas_point_under(page, *pointer)
    levels = page.inner_text("#window-level")
    drag(page, (pointer[0] + 100, pointer[1] + 100), (-60, -40), shift=True)
    panned = canvas_point_under(page, *pointer)

    assert viewer["y"] + viewer["height"] <= 1000  # the whole slice above the fold
    assert "zoom 1.0" in unzoomed
    assert under_after == pytest.approx(under_before, abs=1.0)
    scale = page.evaluate("document.getElementById('scan-canvas').width") / viewer["width"] / 2
    assert panned[0] - under_after[0] == pytest.approx(60 * scale, abs=1.0)
    assert panned[1] - under_after[1] == pytest.approx(40 * scale, abs=1.0)
    assert page.inner_text("#window-level") == levels  # panning leaves window and level


def test_each_new_slice_is_drawn_before_its_label_even_when_it_arrives_late(
    browser, live_server, phantom_model
):
    queued_scans(phantom_model, 5)
    _, page = log_in(browser, live_server, "dr-slow", Role.RADIOLOGIST)
    page.wait_for_selector("#current:not([hidden])")
    page.wait_for_function("document.getElementById('window-level').textContent !== ''")
    # Each slice takes 0.4 s to arrive; the page must not label a scan whose slice it has not
    # drawn. Draws are counted; at each change of the label, a draw must have come since the
    # previous change.
    page.route("**/image/?window=*", lambda route: (time.sleep(0.4), route.continue_()))
    page.evaluate("""() => {
        window.draws = 0; window.drawsAtLabel = [];
        const put = CanvasRenderingContext2D.prototype.putImageData;
        CanvasRenderingContext2D.prototype.putImageData = function (...args) {
            window.draws += 1; return put.apply(this, args); };
        new MutationObserver(() => window.drawsAtLabel.push(window.draws)).observe(
            document.getElementById('model-meta'),
            { childList: true, characterData: true, subtree: true });
    }""")  # fmt: skip
    page.click("h2")
    for count in range(1, 4):
        page.keyboard.press("c")
        page.wait_for_function(
            f"parseInt(document.getElementById('progress').textContent) === {count}"
        )
    draws_at_label = page.evaluate("window.drawsAtLabel")

    assert len(draws_at_label) >= 3
    assert all(later > earlier for earlier, later in itertools.pairwise([0, *draws_at_label]))


def test_a_review_made_stale_in_another_tab_shows_the_scan_as_it_is_now_and_escape_leaves_the_note(
    browser, live_server, phantom_model
):
    queued_scans(phantom_model, 3)
    user, first_tab = log_in(browser, live_server, "dr-tabs", Role.RADIOLOGIST)
    first_tab.wait_for_selector("#current:not([hidden])")
    second_tab = first_tab.context.new_page()  # the same session
    second_tab.goto(f"{live_server.url}/review/")
    second_tab.wait_for_selector("#current:not([hidden])")
    scan = shown_scan(first_tab)
    assert shown_scan(second_tab) == scan

    second_tab.click("h2")
    second_tab.keyboard.press("c")
    second_tab.wait_for_function("parseInt(document.getElementById('progress').textContent) === 1")
    first_tab.click("h2")
    first_tab.keyboard.press("1")
    first_tab.wait_for_function(
        "document.getElementById('review-status').textContent.startsWith('Not saved')"
    )
    refused = first_tab.inner_text("#review-status")
    moved_on_to = shown_scan(first_tab)
    first_tab.keyboard.press("c")  # the scan now on screen, not the stale one again
    first_tab.wait_for_function(
        "document.getElementById('review-status').textContent.startsWith('Saved')"
    )
    first_tab.keyboard.press("n")
    first_tab.wait_for_function("document.getElementById('review-status').textContent === ''")
    first_tab.click("#note")
    first_tab.keyboard.type("calcification")  # c, typed, is a letter of the note
    first_tab.keyboard.press("Escape")  # back to the keys
    first_tab.keyboard.press("c")
    first_tab.wait_for_function("parseInt(document.getElementById('progress').textContent) === 3")

    assert "reviewed meanwhile" in refused
    assert moved_on_to != scan
    assert Scan.objects.exclude(confirmed_label="").count() == 3
    assert user.review_events.order_by("created").last().note == "calcification"


def test_an_evidence_map_without_signal_says_the_method_found_no_localised_evidence(
    browser, live_server, phantom_model
):
    uploader, _ = api_user_upsert(username="uploader", role=Role.CLINICIAN)
    grey = encode(Image.fromarray(np.full((96, 96), 120, np.uint8), mode="L"))
    uniform = make_scan(uploader, image=grey, status=Scan.Status.PREDICTED)
    make_prediction(uniform, phantom_model, label="stone", stone=0.999)
    _, page = log_in(browser, live_server, "dr-empty", Role.RADIOLOGIST)
    page.wait_for_function(
        "document.getElementById('heatmap-note').textContent.startsWith('Evidence map (')",
        timeout=60_000,
    )
    note = page.inner_text("#heatmap-note")

    assert "found no localised evidence" in note
    assert "raised P(abnormal)" not in note
    assert "carries its P(abnormal)" not in note


def test_a_dicom_slice_shows_its_window_in_hounsfield_units_and_which_preset(
    browser, live_server, phantom_model
):
    uploader, _ = api_user_upsert(username="uploader", role=Role.CLINICIAN)
    dicom = make_scan(uploader, image=ct_slice(), content_type="application/dicom",
                      status=Scan.Status.PREDICTED)  # fmt: skip
    make_prediction(dicom, phantom_model, label="normal", stone=0.1)
    _, page = log_in(browser, live_server, "dr-hu", Role.RADIOLOGIST)
    page.wait_for_function("document.getElementById('window-level').textContent !== ''")
    soft = page.inner_text("#window-level")
    drag(page, viewer_middle(page), (-51, 0))  # a fifth of the display range narrower
    narrowed = page.inner_text("#window-level")
    page.click("#preset-bone")
    page.wait_for_function("document.getElementById('window-level').textContent.includes('bone')")
    bone = page.inner_text("#window-level")

    assert soft.startswith("Window 400 HU, level 40 HU (soft tissue preset)")
    assert narrowed.startswith("Window 320 HU, level 40 HU")
    assert bone.startswith("Window 1800 HU, level 400 HU (bone preset)")
    assert page.get_attribute("#preset-bone", "aria-pressed") == "true"


def test_a_clinician_uploads_on_a_page_without_the_queue_and_without_script_errors(
    browser, live_server, phantom_model, tmp_path
):
    upload = tmp_path / "clinician.png"
    upload.write_bytes(phantom_png(size=96, with_stone=True, seed=91))
    _, page = log_in(browser, live_server, "clin-page", Role.CLINICIAN)
    errors = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.reload()

    page.set_input_files("#upload-file", str(upload))
    page.click("#upload-form button")
    page.wait_for_function(
        "document.getElementById('upload-status').textContent.includes('predicted')",
        timeout=60_000,
    )

    assert page.locator("#queue").count() == 0
    assert errors == []


def test_the_page_shows_another_review_of_the_same_image_and_says_when_a_review_contradicts_it(
    browser, live_server, phantom_model
):
    image = phantom_png(size=96, with_stone=True, seed=55)
    first_uploader, _ = api_user_upsert(username="uploader", role=Role.CLINICIAN)
    second_uploader, _ = api_user_upsert(username="uploader-2", role=Role.CLINICIAN)
    confirmer, _ = api_user_upsert(username="dr-first", role=Role.RADIOLOGIST)
    confirmed = make_scan(first_uploader, image=image, status=Scan.Status.PREDICTED,
                          confirmed_label="normal", confirmed_by=confirmer,
                          confirmed_at=timezone.now())  # fmt: skip
    again = make_scan(second_uploader, image=image, status=Scan.Status.PREDICTED)
    for scan in (confirmed, again):
        make_prediction(scan, phantom_model, label="stone", stone=0.9)
    _, page = log_in(browser, live_server, "dr-second", Role.RADIOLOGIST)
    page.wait_for_selector("#same-image:not([hidden])")
    shown = page.inner_text("#same-image")
    page.click("h2")
    page.keyboard.press("2")  # stone, against the other scan's normal
    page.wait_for_function(
        "document.getElementById('review-status').textContent.startsWith('Saved')"
    )

    assert f"scan {confirmed.pk}, confirmed normal by dr-first" in shown
    assert f"contradicts scan {confirmed.pk} (normal)" in page.inner_text("#review-status")
