"""Training through the real Celery worker on the `training` queue, on PostgreSQL + Redis."""

import io
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.core.management import call_command
from django.db import connections

from ml_core.recipes import RETRAIN
from tests.conftest import wait_for
from tests.images import write_phantom_folder
from training.models import ModelVersion, TrainingRun

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("celery_worker_process"),
]


@pytest.fixture
def confirmed_phantoms(tmp_path, settings):
    # A recent block these few labels can fill, so that a run starts (the request is decided
    # in this process).
    settings.KIDNEY_RECENT_EVALUATION_MIN_PER_CLASS = 3
    write_phantom_folder(tmp_path, per_class=60, size=48, seed=8)
    call_command("import_dataset", str(tmp_path), stdout=io.StringIO(), stderr=io.StringIO())


def wait_until_finished(client, run_id: int) -> dict:
    def finished():
        body = client.get(f"/api/training-runs/{run_id}/").json()
        return body if body["status"] in ("succeeded", "failed") else None

    return wait_for(finished, timeout=180, interval=0.5, message=f"training run {run_id}")


def test_a_training_run_through_the_worker_records_mlflow_and_a_candidate(
    client_for, serving_model, confirmed_phantoms
):
    engineer = client_for("ml_engineer")

    accepted = engineer.post("/api/training-runs/", {"epochs": 3}, format="json")
    assert accepted.status_code == 202, accepted.json()
    body = wait_until_finished(engineer, accepted.json()["id"])

    assert body["status"] == "succeeded", body["error"]
    assert body["progress"] == 1.0
    assert body["parameters"]["warm_start_from"] == serving_model.version
    assert len(body["history"]) >= 1
    candidate = ModelVersion.objects.get(version=body["model_version"])
    assert candidate.mlflow_run_id == body["mlflow_run_id"]
    from training.tracking import _mlflow

    recorded = _mlflow().MlflowClient().get_run(body["mlflow_run_id"])
    assert recorded.info.status == "FINISHED"
    assert recorded.data.params["mode"] == RETRAIN.mode
    assert "evaluation_auc" in recorded.data.metrics


def test_concurrent_requests_never_train_in_parallel(client_for, serving_model, confirmed_phantoms):
    engineer = client_for("ml_engineer")

    def request_training(_):
        try:
            return engineer.post("/api/training-runs/", {"epochs": 2}, format="json")
        finally:
            connections.close_all()  # this thread's own database connection

    with ThreadPoolExecutor(max_workers=2) as pool:
        responses = list(pool.map(request_training, range(2)))
    codes = sorted(response.status_code for response in responses)
    assert codes == [202, 409]
    first = next(r.json()["id"] for r in responses if r.status_code == 202)
    wait_until_finished(engineer, first)
    second = engineer.post("/api/training-runs/", {"epochs": 2}, format="json")
    assert second.status_code == 202  # the slot is free again once the first run ended
    wait_until_finished(engineer, second.json()["id"])

    runs = list(TrainingRun.objects.order_by("started"))
    assert len(runs) == 2
    assert runs[0].finished <= runs[1].started
