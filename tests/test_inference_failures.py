"""How the inference tasks treat scans they cannot classify or that lost their message
(run in-process, eagerly)."""

from datetime import timedelta

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.utils import timezone

from ml_core.evidence import METHOD as EVIDENCE_METHOD
from scans.models import Scan
from scans.tasks import classify_scans, requeue_stale_scans
from tests.factories import make_scan
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
    assert "could not be decoded" in broken.error
    assert Scan.objects.get(pk=ids[1]).status == Scan.Status.PREDICTED
    assert client.get(f"/api/scans/{broken.pk}/").json()["error"] == broken.error


@pytest.mark.django_db
def test_the_sweep_picks_only_scans_queued_or_claimed_for_too_long(client_for, settings):
    user = client_for("clinician").user
    now = timezone.now()
    queue_limit = timedelta(seconds=settings.KIDNEY_REQUEUE_QUEUED_AFTER_SECONDS + 1)
    claim_limit = timedelta(seconds=settings.KIDNEY_CLAIM_TIMEOUT_SECONDS + 1)

    def scan(**fields) -> Scan:
        return make_scan(user, **fields)

    lost = scan()
    recent = scan()
    abandoned = scan(status=Scan.Status.PROCESSING, claimed_by="gone", claimed_at=now - claim_limit)
    working = scan(status=Scan.Status.PROCESSING, claimed_by="busy", claimed_at=now)
    finished = scan(status=Scan.Status.FAILED)
    Scan.objects.exclude(pk=recent.pk).update(created=now - queue_limit)

    resent = requeue_stale_scans.apply().get()

    assert resent == 2
    statuses = dict(Scan.objects.values_list("pk", "status"))
    assert statuses[lost.pk] == statuses[abandoned.pk] == Scan.Status.QUEUED
    assert statuses[recent.pk] == Scan.Status.QUEUED
    assert statuses[working.pk] == Scan.Status.PROCESSING
    assert statuses[finished.pk] == Scan.Status.FAILED


@pytest.mark.django_db
def test_beat_runs_the_sweep_every_minute_by_default():
    from django_celery_beat.models import PeriodicTask

    schedule = PeriodicTask.objects.get(task="scans.tasks.requeue_stale_scans")

    assert schedule.enabled
    assert schedule.interval.every == 60
    assert schedule.interval.period == "seconds"


@pytest.mark.django_db
def test_heatmaps_on_request_are_computed_by_the_task_then_served(
    client_for, serving_model, settings, django_capture_on_commit_callbacks
):
    from scans.tasks import compute_heatmap
    from tests.factories import make_prediction

    settings.KIDNEY_EVIDENCE_MAPS = "on_request"
    client = client_for("radiologist")
    scan = make_scan(client.user, image=phantom_png(size=64), status=Scan.Status.PREDICTED)
    make_prediction(scan, serving_model, label="stone", stone=0.9)
    waiting = make_scan(client.user)

    with django_capture_on_commit_callbacks(execute=False) as sent:
        pending = client.get(f"/api/scans/{scan.pk}/heatmap.png")
        polled_again = [client.get(f"/api/scans/{scan.pk}/heatmap.png") for _ in range(3)]
    compute_heatmap.apply(args=[str(scan.pk)]).get()
    ready = client.get(f"/api/scans/{scan.pk}/heatmap.png")

    assert pending.status_code == 202
    assert [response.status_code for response in polled_again] == [202, 202, 202]
    assert len(sent) == 1  # the task was sent once, not at every poll
    assert ready.status_code == 200
    assert ready["Content-Type"] == "image/png"
    assert ready["X-Heatmap-Method"] == EVIDENCE_METHOD
    record = client.get(f"/api/scans/{scan.pk}/").json()["prediction"]
    assert record["heatmap_method"] == EVIDENCE_METHOD
    assert client.get(f"/api/scans/{waiting.pk}/heatmap.png").status_code == 404


@pytest.mark.django_db
def test_a_map_made_by_an_earlier_method_is_made_again_when_asked_for(
    client_for, serving_model, django_capture_on_commit_callbacks
):
    from django.core.files.base import ContentFile

    from scans.tasks import compute_heatmap
    from tests.factories import make_prediction

    client = client_for("radiologist")
    scan = make_scan(client.user, image=phantom_png(size=64), status=Scan.Status.PREDICTED)
    prediction = make_prediction(scan, serving_model, label="stone", stone=0.9)
    prediction.heatmap_method = "grad-cam"  # as migration 0014 records the maps before it
    prediction.heatmap_signal = False
    prediction.heatmap.save("old.png", ContentFile(phantom_png(size=64)), save=True)

    with django_capture_on_commit_callbacks(execute=False) as sent:
        stale = client.get(f"/api/scans/{scan.pk}/heatmap.png")
    compute_heatmap.apply(args=[str(scan.pk)]).get()
    fresh = client.get(f"/api/scans/{scan.pk}/heatmap.png")

    assert stale.status_code == 202
    assert len(sent) == 1
    assert fresh.status_code == 200
    assert fresh["X-Heatmap-Method"] == EVIDENCE_METHOD
    prediction.refresh_from_db()
    assert prediction.heatmap_method == EVIDENCE_METHOD
    assert prediction.heatmap.name != "heatmaps/old.png"


@pytest.mark.django_db
def test_a_scan_whose_worker_died_is_retried_alone_and_fails_once_out_of_attempts(
    client_for, serving_model, settings, django_capture_on_commit_callbacks
):
    user = client_for("clinician").user
    suspect = make_scan(user, image=phantom_png(seed=60), attempts=1)  # its worker died once
    others = [make_scan(user, image=phantom_png(seed=61 + seed)) for seed in range(3)]
    hopeless = make_scan(
        user, image=phantom_png(seed=70), attempts=settings.KIDNEY_SCAN_MAX_ATTEMPTS
    )
    ids = [str(scan.pk) for scan in [suspect, *others, hopeless]]

    with django_capture_on_commit_callbacks() as resent:
        classified = classify_scans.apply(args=[ids]).get()

    assert classified == 1
    suspect.refresh_from_db()
    assert suspect.status == Scan.Status.PREDICTED
    assert suspect.prediction.batch_size == 1  # alone: it cannot take others down with it
    assert suspect.attempts == 2
    hopeless.refresh_from_db()
    assert hopeless.status == Scan.Status.FAILED
    assert f"Gave up after {settings.KIDNEY_SCAN_MAX_ATTEMPTS} attempts" in hopeless.error
    assert set(
        Scan.objects.filter(pk__in=[s.pk for s in others]).values_list("status", flat=True)
    ) == {Scan.Status.QUEUED}
    assert len(resent) == 1  # the others are sent again, as a batch of their own


@pytest.mark.django_db
def test_maps_of_flagged_and_uncertain_scans_are_queued_once_their_predictions_are_stored(
    client_for, serving_model, settings, django_capture_on_commit_callbacks
):
    from scans.tasks import compute_heatmap

    settings.KIDNEY_EVIDENCE_MAPS = "flagged"
    settings.KIDNEY_EVIDENCE_MARGIN = 0.0
    client = client_for("radiologist")
    serving_model.threshold = 2.0  # above every score: nothing is flagged or near it
    serving_model.save()
    quiet = make_scan(client.user, image=phantom_png(seed=80))
    with django_capture_on_commit_callbacks(execute=False) as sent_for_quiet:
        classify_scans.apply(args=[[str(quiet.pk)]]).get()

    serving_model.threshold = 0.0  # every scan is flagged abnormal
    serving_model.save()
    flagged = make_scan(client.user, image=phantom_png(seed=81))
    with django_capture_on_commit_callbacks(execute=False) as sent_for_flagged:
        classify_scans.apply(args=[[str(flagged.pk)]]).get()

    settings.KIDNEY_EVIDENCE_MARGIN = 3.0  # everything is near the threshold
    serving_model.threshold = 2.0
    serving_model.save()
    uncertain = make_scan(client.user, image=phantom_png(seed=82))
    with django_capture_on_commit_callbacks(execute=False) as sent_for_uncertain:
        classify_scans.apply(args=[[str(uncertain.pk)]]).get()

    quiet, flagged, uncertain = (
        Scan.objects.get(pk=scan.pk).prediction for scan in (quiet, flagged, uncertain)
    )
    # Stored without a map (no prediction waits for one), the map queued where it is wanted.
    assert quiet.label == "normal"
    assert flagged.label != "normal"
    assert [bool(p.heatmap) for p in (quiet, flagged, uncertain)] == [False, False, False]
    assert quiet.heatmap_requested_at is None
    assert flagged.heatmap_requested_at is not None
    assert uncertain.heatmap_requested_at is not None
    assert (len(sent_for_quiet), len(sent_for_flagged), len(sent_for_uncertain)) == (0, 1, 1)
    with django_capture_on_commit_callbacks(execute=False) as sent:
        asked = client.get(f"/api/scans/{quiet.scan_id}/heatmap.png")
    assert asked.status_code == 202
    assert len(sent) == 1  # its map is queued the first time someone opens it
    compute_heatmap.apply(args=[str(flagged.scan_id)]).get()
    shown = client.get(f"/api/scans/{flagged.scan_id}/heatmap.png")
    assert shown.status_code == 200
    flagged.refresh_from_db()
    assert flagged.heatmap_method == shown["X-Heatmap-Method"] == EVIDENCE_METHOD
    assert shown["X-Heatmap-Signal"] == ("yes" if flagged.heatmap_signal else "none")


@pytest.mark.django_db
def test_an_empty_heatmap_is_served_with_a_header_that_says_it_has_no_signal(
    client_for, serving_model
):
    import numpy as np

    from scans.inference import heatmap_save, overlays_by_scan
    from tests.factories import make_prediction

    client = client_for("radiologist")
    scan = make_scan(client.user, image=phantom_png(size=64), status=Scan.Status.PREDICTED)
    prediction = make_prediction(scan, serving_model, label="normal", stone=0.0)
    heatmap_save(prediction, overlays_by_scan([scan], np.zeros((1, 2, 2)))[scan.pk])

    response = client.get(f"/api/scans/{scan.pk}/heatmap.png")

    assert response.status_code == 200
    assert response["X-Heatmap-Signal"] == "none"
    assert client.get(f"/api/scans/{scan.pk}/").json()["prediction"]["heatmap_signal"] is False
