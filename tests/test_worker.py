"""Upload -> real Celery worker process on Redis -> stored prediction, on PostgreSQL."""

import io

import numpy as np
import pytest
from django.conf import settings
from django.core.files.uploadedfile import SimpleUploadedFile
from PIL import Image

from ml_core.decision import decide
from ml_core.evidence import METHOD as EVIDENCE_METHOD
from ml_core.images import decode_image
from ml_core.predictor import Predictor
from ml_core.preprocessing import to_model_batch
from scans.models import Prediction, Scan
from scans.tasks import classify_scans
from tests.conftest import wait_for
from tests.factories import make_scan
from tests.images import phantom_jpeg, phantom_png
from training.files import artifact_local_path

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("celery_worker_process"),
]
POLL_SECONDS = 60


def upload(client, data: bytes) -> str:
    response = client.post(
        "/api/scans/", {"file": SimpleUploadedFile("slice.png", data)}, format="multipart"
    )
    assert response.status_code == 202, response.content
    return response.json()["id"]


def poll_until_done(client, scan_id: str) -> dict:
    def finished():
        body = client.get(f"/api/scans/{scan_id}/").json()
        return body if body["status"] in ("predicted", "failed") else None

    return wait_for(finished, timeout=POLL_SECONDS, message=f"scan {scan_id} to finish")


def test_upload_then_poll_reaches_predicted_with_the_same_numbers_as_in_process(
    client_for, serving_model
):
    client = client_for("clinician")
    data = phantom_png(size=96, with_stone=True, seed=5)

    body = poll_until_done(client, upload(client, data))

    assert body["status"] == "predicted", body
    prediction = body["prediction"]
    assert set(prediction["probabilities"]) == {"normal", "stone"}
    assert sum(prediction["probabilities"].values()) == pytest.approx(1.0, abs=2e-4)  # rounded
    assert prediction["model_version"] == serving_model.version
    assert prediction["threshold"] == round(serving_model.threshold, 4)
    probabilities = [prediction["probabilities"][name] for name in serving_model.classes]
    assert prediction["label"] == decide(
        probabilities, serving_model.classes, serving_model.threshold
    )
    # The worker's preprocessing and model give what the library gives in this process.
    predictor = Predictor.load(str(artifact_local_path(serving_model.artifact)))
    pixels = decode_image(data, max_pixels=10**7).pixels
    expected = predictor.predict(to_model_batch([pixels], serving_model.preprocessing_config))
    np.testing.assert_allclose(probabilities, expected[0], atol=2e-4)  # the API rounds to 4
    # The first GET asks the worker for the evidence map (on request, the default); it comes
    # the size of the upload, named by its method.
    heatmap_url = f"/api/scans/{body['id']}/heatmap.png"
    assert client.get(heatmap_url).status_code == 202
    heatmap = wait_for(
        lambda: (response := client.get(heatmap_url)).status_code == 200 and response,
        timeout=POLL_SECONDS,
        message="the heatmap",
    )
    assert heatmap["Content-Type"] == "image/png"
    assert heatmap["X-Heatmap-Method"] == EVIDENCE_METHOD
    overlay = Image.open(io.BytesIO(b"".join(heatmap.streaming_content)))
    assert (overlay.mode, overlay.size) == ("RGBA", (96, 96))


def test_a_burst_of_uploads_is_classified_in_batches(client_for, serving_model):
    client = client_for("radiologist")
    scan_ids = [
        upload(client, (phantom_png if seed % 2 else phantom_jpeg)(size=64, seed=seed))
        for seed in range(24)
    ]

    bodies = [poll_until_done(client, scan_id) for scan_id in scan_ids]

    assert [body["status"] for body in bodies] == ["predicted"] * len(scan_ids)
    assert Prediction.objects.count() == len(scan_ids)
    batch_sizes = list(Prediction.objects.values_list("batch_size", flat=True))
    assert max(batch_sizes) > 1  # one forward pass served several scans
    assert max(batch_sizes) <= settings.KIDNEY_INFERENCE_BATCH_SIZE


def test_running_the_task_again_changes_nothing(client_for, serving_model):
    client = client_for("clinician")
    scan_id = upload(client, phantom_png(seed=11))
    poll_until_done(client, scan_id)
    prediction = Prediction.objects.get(scan_id=scan_id)

    classified = classify_scans.apply(args=[[scan_id]]).get()

    assert classified == 0
    assert list(Prediction.objects.filter(scan_id=scan_id)) == [prediction]
    assert Scan.objects.get(pk=scan_id).status == Scan.Status.PREDICTED


def test_the_sweep_resends_scans_whose_message_was_lost(client_for, serving_model, settings):
    from datetime import timedelta

    from django.utils import timezone

    from scans.tasks import requeue_stale_scans

    client = client_for("clinician")
    lost = make_scan(client.user, image=phantom_png(seed=21))  # no message was ever sent
    abandoned = make_scan(
        client.user,
        image=phantom_png(seed=22),
        status=Scan.Status.PROCESSING,
        claimed_by="a-task-whose-worker-vanished",
        claimed_at=timezone.now() - timedelta(seconds=settings.KIDNEY_CLAIM_TIMEOUT_SECONDS + 1),
    )
    old = timezone.now() - timedelta(seconds=settings.KIDNEY_REQUEUE_QUEUED_AFTER_SECONDS + 1)
    Scan.objects.filter(pk__in=[lost.pk, abandoned.pk]).update(created=old)

    requeue_stale_scans.delay()

    for scan in (lost, abandoned):
        assert poll_until_done(client, str(scan.pk))["status"] == "predicted"


def test_a_poison_scan_is_retried_with_backoff_then_fails_and_never_blocks_the_others(
    client_for, serving_model, settings
):
    import time

    client = client_for("clinician")
    poison = make_scan(client.user)  # its file is gone from storage
    healthy = [make_scan(client.user, image=phantom_png(seed=40 + seed)) for seed in range(5)]
    sent = time.monotonic()

    classify_scans.delay([str(poison.pk)] + [str(scan.pk) for scan in healthy])

    for scan in healthy:
        assert poll_until_done(client, str(scan.pk))["status"] == "predicted"
    poison.refresh_from_db()
    assert poison.status != Scan.Status.FAILED  # still backing off: it held no one up
    body = poll_until_done(client, str(poison.pk))
    waited = time.monotonic() - sent
    poison.refresh_from_db()
    assert body["status"] == "failed"
    assert "could not be read: No such file or directory" in body["error"]
    assert str(settings.MEDIA_ROOT) not in body["error"]  # no server paths for users
    assert f"after {settings.KIDNEY_SCAN_MAX_ATTEMPTS} attempts" in body["error"]
    assert poison.attempts == settings.KIDNEY_SCAN_MAX_ATTEMPTS
    # Backoff: 2 s, then 4 s, between the three attempts.
    assert waited >= settings.KIDNEY_SCAN_RETRY_SECONDS * (1 + 2)
