"""Int8 twins (ml_core.int8, training.twins): calibrated, judged against their float model,
served by the worker only when they passed, and rebuilt for the shipped model."""

import json

import numpy as np
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from PIL import Image

from ml_core import int8
from ml_core.datasets import folder_manifest
from ml_core.decision import abnormal_scores
from ml_core.phantoms import draw_phantom_set
from ml_core.preprocessing import PreprocessingConfig, to_model_batch
from scans.models import Prediction
from tests.commands import TINY_TRAINING, run
from tests.conftest import wait_for
from tests.images import phantom_png, write_phantom_folder
from training.evaluation import evaluation_set_freeze
from training.files import model_load, twin_local_path
from training.models import ModelVersion

# The tiny model's own threshold falls among its stone scores (about 0.87; they run from 0.6),
# where any change of a score flips decisions. Between the classes (normal scores stay below
# 0.52), the gate judges the twin rather than the threshold.
BETWEEN_THE_CLASSES = 0.55


def _phantom_batch(artifact: dict, count: int, seed: int):
    """Model input for `count` phantoms with large stones (the study model tells them
    apart), and which of them have one."""
    from tests.dicom_files import STUDY_STONE_RADIUS

    config = PreprocessingConfig(input_size=artifact["input_size"], **artifact["preprocessing"])
    images, labels = draw_phantom_set(count, size=64, seed=seed, stone_radius=STUDY_STONE_RADIUS)
    return to_model_batch(images, config), labels.astype(bool)


def test_the_twin_of_a_tiny_model_agrees_with_it_within_the_gates_margins(study_model_artifact):
    model = model_load(study_model_artifact["artifact"])
    calibration, _ = _phantom_batch(study_model_artifact, 64, seed=11)
    judged, positive = _phantom_batch(study_model_artifact, 300, seed=12)
    twin = int8.quantize(model, [calibration])
    classes, threshold = ["normal", "stone"], BETWEEN_THE_CLASSES

    float_scores = abnormal_scores(np.asarray(model.predict_on_batch(judged)), classes)
    twin_scores = abnormal_scores(int8.OpenVinoPredictor(twin).predict(judged), classes)
    gate = int8.twin_gate(positive, float_scores, twin_scores, threshold)

    assert gate["passed"], gate
    assert gate["checks"]["auc_change"]["float"] > 0.9  # a model worth quantising
    assert 0 < gate["max_score_change"] < 0.05  # int8 indeed, and close
    # The same float model and activation ranges give the same twin, from any calibration.
    blank = np.zeros_like(calibration[:1])
    rebuilt = int8.with_activation_ranges(
        int8.quantize(model, [blank]), int8.activation_ranges(twin)
    )
    assert np.array_equal(
        int8.OpenVinoPredictor(rebuilt).predict(judged),
        int8.OpenVinoPredictor(twin).predict(judged),
    )
    with pytest.raises(ValueError, match="another model"):
        int8.with_activation_ranges(int8.quantize(model, [blank]), int8.activation_ranges(twin)[1:])


@pytest.fixture
def judged_by_phantoms(tmp_path, serving_study_model):
    """The study model serving, with a frozen evaluation set of large-stone phantoms to judge
    its twins on, and a folder of other phantoms to calibrate them on."""
    from tests.dicom_files import STUDY_STONE_RADIUS

    evaluation = tmp_path / "evaluation"
    write_phantom_folder(
        evaluation, per_class=100, size=64, seed=21, stone_radius=STUDY_STONE_RADIUS
    )
    evaluation_set_freeze(
        entries=folder_manifest(evaluation, ["normal", "stone"]), source="phantoms"
    )
    calibration = tmp_path / "calibration"
    write_phantom_folder(
        calibration, per_class=40, size=64, seed=22, stone_radius=STUDY_STONE_RADIUS
    )
    blank = tmp_path / "blank"
    blank.mkdir()
    # Flat grey: the tiny model's VGG16 normalisation subtracts about this much, so its
    # calibration sees next to no activation anywhere.
    Image.new("L", (64, 64), 116).save(blank / "blank.png")
    serving_study_model.threshold = BETWEEN_THE_CLASSES
    serving_study_model.save(update_fields=["threshold"])
    return serving_study_model, calibration, blank


def _upload_and_wait(client, seed: int) -> Prediction:
    upload = SimpleUploadedFile(f"{seed}.png", phantom_png(seed=seed))
    response = client.post("/api/scans/", {"file": upload}, format="multipart")
    assert response.status_code == 202, response.content
    scan_id = response.json()["id"]
    return wait_for(
        lambda: Prediction.objects.filter(scan_id=scan_id).first(),
        timeout=120,
        message="the worker's prediction",
    )


@pytest.mark.django_db(transaction=True)
def test_only_a_twin_that_passed_its_gate_serves(
    client_for, judged_by_phantoms, celery_worker_process
):
    model_version, calibration, blank = judged_by_phantoms
    clinician, engineer = client_for("clinician"), client_for("ml_engineer")

    # No twin: Keras serves.
    assert _upload_and_wait(clinician, seed=501).runtime.startswith("keras-")

    # Calibrated on one blank image, the twin clips every activation: refused, kept, and
    # Keras still serves.
    failed = json.loads(
        run("int8_twin", "--calibration-images", str(blank)).strip().splitlines()[-1]
    )
    assert failed["passed"] is False, failed["blocks"]
    judged = failed["blocks"]["evaluation_set_v1"]
    assert judged["n"] == 200
    assert not judged["checks"]["decisions_changed"]["passed"]
    shown = engineer.get(f"/api/models/{model_version.pk}/").json()
    assert shown["int8_twin_passed"] is False
    assert shown["int8_gate"]["passed"] is False
    model_version.refresh_from_db()
    assert model_version.int8_artifact  # kept for inspection
    assert _upload_and_wait(clinician, seed=502).runtime.startswith("keras-")

    # Calibrated on phantoms, it passes: the worker serves it from the next batch on, and it
    # decides as the float model does.
    output = run("int8_twin", "--calibration-images", str(calibration))
    passed = json.loads(output.strip().splitlines()[-1])
    assert passed["passed"] is True, passed
    assert "passed its gate" in output
    shown = engineer.get(f"/api/models/{model_version.pk}/").json()
    assert shown["int8_twin_passed"] is True
    assert shown["int8_gate"]["blocks"]["evaluation_set_v1"]["checks"]["auc_change"]["passed"]
    served = _upload_and_wait(clinician, seed=503)
    assert served.runtime == "openvino-int8"
    scan = served.scan
    assert clinician.get(f"/api/scans/{scan.pk}/").json()["prediction"]["runtime"] == (
        "openvino-int8"
    )


@pytest.mark.django_db
def test_a_training_run_builds_its_versions_twin_and_records_it_in_mlflow(settings, tmp_path):
    settings.KIDNEY_INT8_TWINS = True
    write_phantom_folder(tmp_path, per_class=20, size=64, seed=3)

    run("train", "--data", str(tmp_path), *TINY_TRAINING)

    candidate = ModelVersion.objects.get()
    gate = candidate.int8_gate
    assert candidate.int8_artifact.endswith("-int8.xml")
    assert gate["calibration"].endswith("images")
    assert set(gate["blocks"]) == {"evaluation_set_v1"}  # no recent block on a first run
    assert gate["blocks"]["evaluation_set_v1"]["n"] == 8
    from training.tracking import _mlflow

    client = _mlflow().MlflowClient()
    logged = {item.path for item in client.list_artifacts(candidate.mlflow_run_id, "int8")}
    assert logged == {"int8/twin.xml", "int8/twin.bin", "int8/gate.json"}
    recorded = client.get_run(candidate.mlflow_run_id).data.metrics
    assert recorded["int8_gate_passed"] == float(gate["passed"])


@pytest.mark.django_db
def test_bootstrap_rebuilds_the_shipped_twin_that_was_judged_when_it_shipped(settings):
    from ml_core.shipped import shipped_description

    settings.KIDNEY_INT8_TWINS = True
    shipped = shipped_description(settings.KIDNEY_SHIPPED_MODEL_DIR)

    output = run("bootstrap_model")

    model_version = ModelVersion.objects.get()
    assert model_version.int8_twin_passed
    assert model_version.int8_gate["blocks"]["held_out"] == shipped["int8"]["held_out"]
    assert model_version.int8_gate["calibration"] == "activation ranges recorded with the version"
    assert "Int8 twin passed its gate on the held-out block" in output
    # The gate was measured when the model shipped; what bootstrap stored must be that twin,
    # not one that only carries its numbers: it scores as the float model does (a twin
    # calibrated on a blank image moved scores by up to 0.93 on real slices).
    images, _ = draw_phantom_set(16, size=256, seed=31)
    slices = to_model_batch(images, model_version.preprocessing_config)
    classes = model_version.classes
    float_model = model_load(model_version.artifact)
    float_scores = abnormal_scores(np.asarray(float_model.predict_on_batch(slices)), classes)
    twin = int8.OpenVinoPredictor.load(twin_local_path(model_version.int8_artifact))
    assert np.max(np.abs(abnormal_scores(twin.predict(slices), classes) - float_scores)) < 0.1
