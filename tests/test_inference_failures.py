"""How the inference task treats scans it cannot classify (run in-process, eagerly)."""

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from scans.models import Scan
from scans.tasks import classify_scans
from tests.images import phantom_png


@pytest.mark.django_db
def test_a_scan_whose_stored_file_is_unreadable_fails_with_its_reason_and_others_proceed(
    client_for, serving_model, django_capture_on_commit_callbacks
):
    client = client_for("clinician")
    with django_capture_on_commit_callbacks():  # enqueue nothing: the task runs here
        ids = [
            client.post(
                "/api/scans/",
                {"file": SimpleUploadedFile("s.png", phantom_png(seed=seed))},
                format="multipart",
            ).json()["id"]
            for seed in range(2)
        ]
    broken = Scan.objects.get(pk=ids[0])
    with broken.file.open("wb") as stored:
        stored.write(b"overwritten on disk")

    classified = classify_scans.apply(args=[ids]).get()

    broken.refresh_from_db()
    assert classified == 1
    assert broken.status == Scan.Status.FAILED
    assert "could not be read" in broken.error
    assert Scan.objects.get(pk=ids[1]).status == Scan.Status.PREDICTED
    assert client.get(f"/api/scans/{broken.pk}/").json()["error"] == broken.error
