"""The learning loop's seams, through public interfaces: MLflow's registry down while a
candidate is registered (nothing kept; the run is retried), MLflow down while serving changes
(200 with a warning; beat's check moves the alias later), every serving version in the
registry (the placeholder too, so rollbacks move `champion`), every label with a source,
and media through a storage with no local path."""

from pathlib import Path

import pytest
from django.core.files.storage import default_storage
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management.base import CommandError
from mlflow.exceptions import MlflowException

from retraining.selectors import confirmed_label_entries
from scans import inference
from scans.models import ReviewEvent, Scan
from scans.tasks import compute_heatmap
from tests.commands import TINY_TRAINING, run
from tests.conftest import wait_for
from tests.factories import make_prediction, make_scan
from tests.images import phantom_png, write_phantom_folder
from tests.processes import free_port
from training import tracking
from training.files import local_entries
from training.models import ModelVersion, PromotionLog, TrainingRun
from training.tasks import reconcile_champion, run_training

TINY_BOOTSTRAP = ["--placeholder", "--input-size", "32", "--samples", "64", "--epochs", "2"]


@pytest.fixture(scope="module")
def phantom_folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("loop-phantoms")
    write_phantom_folder(root, per_class=16, size=48, seed=5)
    return root


@pytest.fixture
def registry(settings):
    """Switch MLflow's registry off (a port nobody listens on) and on again."""

    class Registry:
        def down(self):
            settings.MLFLOW_REGISTRY_URI = f"http://127.0.0.1:{free_port()}"

        def up(self):
            settings.MLFLOW_REGISTRY_URI = settings.MLFLOW_TRACKING_URI

    return Registry()


@pytest.fixture
def lenient_gate(settings):
    settings.KIDNEY_PROMOTION_SENSITIVITY_FLOOR = 0.0
    settings.KIDNEY_PROMOTION_SPECIFICITY_FLOOR = 0.0
    settings.KIDNEY_PROMOTION_MIN_AUC = 0.0
    settings.KIDNEY_PROMOTION_AUC_MARGIN = 1.0


def stored_models() -> list[str]:
    return sorted(default_storage.listdir("models")[1])


@pytest.mark.django_db
def test_a_candidate_mlflow_cannot_register_leaves_nothing_and_its_run_is_retried(
    phantom_folder, registry, client_for
):
    models_before = stored_models()
    registry.down()

    with pytest.raises(CommandError, match="MLflow could not register the candidate"):
        run("train", "--data", str(phantom_folder), *TINY_TRAINING)

    failed = TrainingRun.objects.get()
    assert failed.status == TrainingRun.Status.FAILED
    assert "nothing was kept" in failed.error
    assert failed.active is None
    assert not ModelVersion.objects.exists()
    assert stored_models() == models_before

    registry.up()
    engineer = client_for("ml_engineer")
    retried = engineer.post(f"/api/training-runs/{failed.pk}/retry/")
    assert retried.status_code == 202, retried.json()
    assert retried.json()["retry_of"] == failed.pk
    assert engineer.post(f"/api/training-runs/{failed.pk}/retry/").status_code == 409
    run_training.apply(args=[retried.json()["id"]]).get()

    body = engineer.get(f"/api/training-runs/{retried.json()['id']}/").json()
    assert body["status"] == "succeeded", body["error"]
    assert body["manifest_digest"] == failed.manifest_digest
    candidate = ModelVersion.objects.get(version=body["model_version"])
    assert body["mlflow_version"] == candidate.mlflow_version != ""
    assert stored_models() == sorted([*models_before, Path(candidate.artifact).name])
    refused = engineer.post(f"/api/training-runs/{body['id']}/retry/")
    assert refused.status_code == 409  # only a failed run is retried


@pytest.mark.django_db
def test_serving_changes_while_mlflow_is_down_and_champion_follows_when_it_answers(
    phantom_folder, registry, lenient_gate, client_for
):
    run("bootstrap_model", *TINY_BOOTSTRAP)
    placeholder = ModelVersion.objects.get(status=ModelVersion.Status.SERVING)
    assert placeholder.mlflow_version  # the placeholder is in the registry too
    assert tracking.champion_version() == placeholder.mlflow_version
    run("train", "--data", str(phantom_folder), *TINY_TRAINING)  # promoted by the gate
    trained = ModelVersion.objects.get(status=ModelVersion.Status.SERVING)
    assert trained != placeholder
    assert tracking.champion_version() == trained.mlflow_version
    engineer = client_for("ml_engineer")

    registry.down()
    promoted = engineer.post(f"/api/models/{placeholder.pk}/promote/")

    assert promoted.status_code == 200, promoted.json()
    assert promoted.json()["decision"] == "promoted"
    assert "MLflow did not answer" in promoted.json()["warning"]
    assert promoted.json()["to_mlflow_version"] == placeholder.mlflow_version
    placeholder.refresh_from_db()
    assert placeholder.status == ModelVersion.Status.SERVING  # the database decides
    with pytest.raises(MlflowException):
        reconcile_champion.apply().get()  # beat's check fails while MLflow is down ...
    registry.up()
    assert tracking.champion_version() == trained.mlflow_version
    assert reconcile_champion.apply().get() == f"champion moved to {placeholder.label}"
    assert tracking.champion_version() == placeholder.mlflow_version  # ... and then catches up
    assert reconcile_champion.apply().get() == "in line"

    forward = engineer.post(f"/api/models/{placeholder.pk}/rollback/")
    assert forward.json()["to_version"] == trained.version
    assert tracking.champion_version() == trained.mlflow_version
    back = engineer.post(f"/api/models/{trained.pk}/rollback/")
    assert back.status_code == 200, back.json()
    assert back.json()["warning"] == ""
    assert back.json()["to_version"] == placeholder.version
    assert tracking.champion_version() == placeholder.mlflow_version  # rollbacks move it too
    assert list(PromotionLog.objects.order_by("created").values_list("action", flat=True)) == [
        "bootstrap",
        "promote",
        "promote",
        "rollback",
        "rollback",
    ]


@pytest.mark.django_db
def test_bootstrap_force_is_a_logged_change_of_serving_version():
    run("bootstrap_model", *TINY_BOOTSTRAP)
    assert "already serves" in run("bootstrap_model", *TINY_BOOTSTRAP)

    run("bootstrap_model", *TINY_BOOTSTRAP, "--force")

    first, second = ModelVersion.objects.order_by("version")
    assert (first.status, second.status) == ("retired", "serving")
    log = PromotionLog.objects.order_by("created").last()
    assert (log.action, log.from_version, log.to_version) == ("bootstrap", first, second)
    assert tracking.champion_version() == second.mlflow_version


@pytest.mark.django_db
def test_imported_labels_carry_a_review_event_marked_as_imported(phantom_folder, client_for):
    run("import_dataset", str(phantom_folder))

    scans = Scan.objects.exclude(confirmed_label="")
    assert scans.count() == 32
    events = ReviewEvent.objects.filter(scan__in=scans)
    assert events.count() == 32
    assert set(events.values_list("source", flat=True)) == {"import"}
    scan = scans.first()
    trail = client_for("radiologist").get(f"/api/scans/{scan.pk}/reviews/").json()
    assert [(event["source"], event["new_label"]) for event in trail] == [
        ("import", scan.confirmed_label)
    ]


@pytest.mark.django_db
def test_a_heatmap_by_an_older_version_keeps_the_serving_model_loaded(
    client_for, serving_model, tiny_model_artifact
):
    user = client_for("radiologist").user
    older = ModelVersion.objects.create(version=2, status="retired", **tiny_model_artifact)
    oldest = ModelVersion.objects.create(version=3, status="retired", **tiny_model_artifact)
    by_older, by_oldest = (
        make_scan(user, image=phantom_png(size=64, seed=seed), status=Scan.Status.PREDICTED)
        for seed in (1, 2)
    )
    make_prediction(by_older, older, label="stone", stone=0.9)
    make_prediction(by_oldest, oldest, label="stone", stone=0.9)
    inference.serving_predictor()

    compute_heatmap.apply(args=[str(by_older.pk)]).get()
    assert inference.loaded_model_versions() == sorted([serving_model.pk, older.pk])
    compute_heatmap.apply(args=[str(by_oldest.pk)]).get()
    assert inference.loaded_model_versions() == sorted([serving_model.pk, oldest.pk])
    by_older.prediction.refresh_from_db()
    assert by_older.prediction.heatmap


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("celery_worker_process")
def test_upload_inference_manifest_and_heatmap_through_a_storage_without_local_paths(
    client_for, serving_model
):
    with pytest.raises(NotImplementedError):
        default_storage.path("scans/anything.png")
    clinician, radiologist = client_for("clinician"), client_for("radiologist")

    accepted = clinician.post(
        "/api/scans/",
        {"file": SimpleUploadedFile("slice.png", phantom_png(size=64, with_stone=True))},
        format="multipart",
    )
    assert accepted.status_code == 202, accepted.content
    scan_id = accepted.json()["id"]
    body = wait_for(
        lambda: (
            (b := clinician.get(f"/api/scans/{scan_id}/").json())["status"] == "predicted" and b
        ),
        timeout=60,
        message="the scan to be predicted",
    )
    heatmap_url = f"/api/scans/{scan_id}/heatmap.png"
    assert radiologist.get(heatmap_url).status_code == 202  # asked for on request
    heatmap = wait_for(
        lambda: (response := radiologist.get(heatmap_url)).status_code == 200 and response,
        timeout=60,
        message="the heatmap",
    )
    image = radiologist.get(f"/api/scans/{scan_id}/image/")
    reviewed = radiologist.post(
        f"/api/scans/{scan_id}/review/",
        {"label": "stone", "version": body["review_version"]},
        format="json",
    )
    entries = confirmed_label_entries(["normal", "stone"])

    assert heatmap.status_code == 200
    assert heatmap["Content-Type"] == "image/png"
    scan = Scan.objects.get(pk=scan_id)
    with default_storage.open(scan.file.name) as stored:
        stored_bytes = stored.read()
    assert b"".join(image.streaming_content) == stored_bytes
    assert reviewed.status_code == 200
    assert [entry.path for entry in entries] == [f"storage:{scan.file.name}"]
    assert Path(local_entries(entries)[0].path).read_bytes() == stored_bytes


@pytest.mark.django_db
def test_every_beat_schedule_names_a_registered_task():
    from django_celery_beat.models import PeriodicTask

    from kidneyproject.celery import app

    app.loader.import_default_modules()
    schedules = dict(PeriodicTask.objects.values_list("task", "interval__every"))

    assert set(schedules) <= set(app.tasks)
    assert schedules["retraining.tasks.retrain_if_enough_new_labels"] == 10  # minutes
    assert schedules["training.tasks.reconcile_champion"] == 60  # seconds
    assert schedules["training.tasks.requeue_stale_training_runs"] == 300


@pytest.mark.django_db
def test_a_training_run_whose_message_was_lost_is_sent_again(
    settings, django_capture_on_commit_callbacks
):
    from datetime import timedelta

    from django.utils import timezone

    from ml_core.datasets import LabelledImage
    from training.runs import training_run_create
    from training.tasks import requeue_stale_training_runs

    settings.KIDNEY_REQUEUE_QUEUED_AFTER_SECONDS = 60
    entries = [LabelledImage("storage:scans/x.png", "normal", 0, sha256="a")]
    run_ = training_run_create(
        entries=entries, parameters={}, data_source="t", trigger="command", enqueue=False
    )
    with django_capture_on_commit_callbacks(execute=False) as fresh:
        assert requeue_stale_training_runs.apply().get() == 0
    TrainingRun.objects.filter(pk=run_.pk).update(created=timezone.now() - timedelta(minutes=5))
    with django_capture_on_commit_callbacks(execute=False) as stale:
        assert requeue_stale_training_runs.apply().get() == 1

    assert (len(fresh), len(stale)) == (0, 1)


@pytest.mark.django_db
def test_training_reads_a_storage_with_local_paths_in_place_and_copies_from_one_without(
    settings, client_for
):
    scan = make_scan(client_for("radiologist").user, image=phantom_png(), confirmed_label="normal")
    entries = confirmed_label_entries(["normal", "stone"])

    copied = Path(local_entries(entries)[0].path)
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    }
    in_place = Path(local_entries(entries)[0].path)

    assert copied.parent == settings.KIDNEY_IMAGE_CACHE_DIR
    assert in_place == settings.MEDIA_ROOT / scan.file.name
    assert copied.read_bytes() == in_place.read_bytes()
