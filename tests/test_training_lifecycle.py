"""Model lifecycle through its public interfaces: import_dataset, train, evaluate, the
promotion gate over REST, and the retrain trigger (in-process; the worker path is in
test_training_worker.py)."""

import json

import pytest
from django.core.management.base import CommandError

from ml_core.classifier import build_classifier
from ml_core.training import TrainedClassifier, train_on_phantoms
from retraining.tasks import retrain_if_enough_new_labels
from scans.models import Scan
from tests.commands import TINY_TRAINING, run
from tests.images import write_phantom_folder
from training.files import manifest_load
from training.models import EvaluationSet, ModelVersion, PromotionLog, TrainingRun
from training.runs import TrainingRunActive, training_run_create
from training.services import model_version_register
from training.tracking import CHALLENGER, REGISTERED_MODEL, TrainingTracker


@pytest.fixture(scope="module")
def phantom_folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("phantom-ct")
    write_phantom_folder(root, per_class=20, size=64, seed=3)
    return root


@pytest.mark.django_db
def test_import_dataset_is_idempotent_by_content_and_refuses_unreadable_files(
    phantom_folder, tmp_path
):
    first = run("import_dataset", str(phantom_folder))
    again = run("import_dataset", str(phantom_folder))

    assert "Imported 40 labelled images" in first
    assert "Imported 0 labelled images, skipped 40" in again
    imported = Scan.objects.filter(status=Scan.Status.IMPORTED)
    assert imported.count() == 40
    assert set(imported.values_list("confirmed_label", flat=True)) == {"normal", "stone"}
    assert not imported.filter(confirmed_at=None).exists()

    (tmp_path / "normal").mkdir()
    (tmp_path / "stone").mkdir()
    (tmp_path / "stone" / "notes.png").write_text("not an image")
    assert "refused 1 unreadable" in run("import_dataset", str(tmp_path))
    with pytest.raises(CommandError, match="no subfolder for: tumor"):
        run("import_dataset", str(phantom_folder), "--classes", "normal,tumor")


@pytest.mark.django_db
def test_train_on_a_folder_records_mlflow_registers_a_candidate_and_applies_the_gate(
    phantom_folder,
):
    output = run(
        "train", "--data", str(phantom_folder), *TINY_TRAINING,
        "--precision", "bfloat16", "--normalisation", "standard",
    )  # fmt: skip

    training_run = TrainingRun.objects.get()
    assert training_run.status == TrainingRun.Status.SUCCEEDED, training_run.error
    assert training_run.progress == 1.0
    assert [row["epoch"] for row in training_run.history] == [1, 2, 3]
    assert "epoch 3" in output
    candidate = training_run.model_version
    assert candidate.input_size == 32
    assert candidate.preprocessing_config.normalisation == "standard"  # served as trained
    assert set(candidate.metrics) == {"validation", "evaluation"}
    # The last 20% of each class by file number is frozen as the evaluation set.
    evaluation_set = EvaluationSet.objects.get()
    assert evaluation_set.class_counts == {"normal": 4, "stone": 4}
    evaluated = {entry["sha256"] for entry in evaluation_set.entries}
    assert training_run.manifest_size == 40 - 8 - 2 * 5  # minus the evaluation set and gap
    assert candidate.metrics["evaluation"]["n"] == {"normal": 4, "stone": 4}
    assert evaluated  # and none of them was trained on:
    trained_on = {entry.sha256 for entry in manifest_load(training_run.manifest_digest)}
    assert len(trained_on) == training_run.manifest_size
    assert not evaluated & trained_on
    # MLflow: the run with parameters, epochs, plots and the registered model.
    from training.tracking import _mlflow

    mlflow = _mlflow()
    client = mlflow.MlflowClient()
    recorded = client.get_run(training_run.mlflow_run_id)
    assert recorded.data.params["mode"] == "head"
    assert recorded.data.params["precision"] == "bfloat16"
    assert [m.step for m in client.get_metric_history(recorded.info.run_id, "val_auc")] == [1, 2, 3]
    assert "validation_sensitivity" in recorded.data.metrics
    plots = {item.path for item in client.list_artifacts(recorded.info.run_id, "plots")}
    assert plots == {"plots/validation_roc.png", "plots/validation_confusion.png"}
    registered = client.get_model_version(REGISTERED_MODEL, candidate.mlflow_version)
    assert registered.run_id == training_run.mlflow_run_id
    challenger = client.get_model_version_by_alias(REGISTERED_MODEL, CHALLENGER)
    assert str(challenger.version) == candidate.mlflow_version
    log = PromotionLog.objects.get(to_version=candidate)
    assert log.actor is None  # the system applied the gate after training
    assert "Promotion gate" in output


@pytest.mark.django_db
def test_too_few_held_out_images_freeze_no_evaluation_set_and_the_gate_does_not_judge(
    phantom_folder, settings
):
    settings.KIDNEY_EVALUATION_MIN_PER_CLASS = 5  # the folder's last block holds 4 a class

    run("train", "--data", str(phantom_folder), *TINY_TRAINING)

    training_run = TrainingRun.objects.get()
    assert training_run.status == TrainingRun.Status.SUCCEEDED, training_run.error
    assert not EvaluationSet.objects.exists()
    assert training_run.manifest_size == 40 - 8 - 2 * 5  # the last block is still kept out
    candidate = training_run.model_version
    assert candidate.status == ModelVersion.Status.CANDIDATE
    assert set(candidate.metrics["validation"]) >= {"sensitivity", "specificity", "auc"}
    assert training_run.metrics["gate"]["passed"] is None
    assert training_run.metrics["gate"]["detail"].startswith("Not enough to judge")
    assert PromotionLog.objects.get().decision == PromotionLog.Decision.NOT_JUDGED


@pytest.mark.django_db
def test_evaluate_prints_one_json_object_as_its_last_line(phantom_folder, serving_model):
    output = run("evaluate", "--data", str(phantom_folder))

    report = json.loads(output.strip().splitlines()[-1])
    assert report["model_version"] == serving_model.version
    assert report["n"] == {"normal": 20, "stone": 20}
    assert report["threshold"] == serving_model.threshold
    assert set(report) >= {"sensitivity", "specificity", "auc", "confusion"}
    with pytest.raises(CommandError, match="No model version 99"):
        run("evaluate", "--data", str(phantom_folder), "--model", "99")


def register(model, threshold: float) -> ModelVersion:
    from ml_core.preprocessing import PreprocessingConfig

    size = model.input_shape[1]
    with TrainingTracker("test") as tracker:
        return model_version_register(
            trained=TrainedClassifier(
                model, ["normal", "stone"], PreprocessingConfig(input_size=size), threshold, {}
            ),
            description="test",
            tracker=tracker,
        )


@pytest.fixture(scope="module")
def phantom_trained():
    """Trained once for the module's tests (about 20 s); each registers its own version."""
    return train_on_phantoms(input_size=64, samples=300, epochs=30, target_sensitivity=0.9)


@pytest.fixture
def good_and_bad_versions(db, phantom_folder, phantom_trained, settings):
    """A phantom-trained version and an untrained one, with an evaluation set frozen."""
    from ml_core.datasets import block_split, folder_manifest
    from training.evaluation import evaluation_set_freeze

    settings.KIDNEY_PROMOTION_SENSITIVITY_FLOOR = 0.6
    settings.KIDNEY_PROMOTION_MIN_AUC = 0.6
    _, held_out = block_split(
        folder_manifest(phantom_folder, ["normal", "stone"]), fraction=0.5, gap=0
    )
    evaluation_set_freeze(entries=held_out, source="test")
    good = register(phantom_trained.model, phantom_trained.threshold)
    import keras

    keras.utils.set_random_seed(5)
    bad = register(build_classifier(["normal", "stone"], 64, "none"), 0.5)
    return good, bad


@pytest.mark.django_db
def test_the_gate_refuses_a_worse_candidate_and_promotes_a_better_one(
    client_for, good_and_bad_versions
):
    good, bad = good_and_bad_versions
    engineer = client_for("ml_engineer")

    first = engineer.post(f"/api/models/{good.id}/promote/")
    worse = engineer.post(f"/api/models/{bad.id}/promote/")

    assert first.status_code == 200, first.json()["gate"]["checks"]
    assert first.json()["decision"] == "promoted"
    assert worse.status_code == 409
    assert worse.json()["decision"] == "rejected"
    checks = worse.json()["gate"]["checks"]
    assert checks["auc_margin"]["passed"] is False
    assert checks["auc_margin"]["serving"] > checks["auc_margin"]["candidate"]
    good.refresh_from_db()
    assert good.status == ModelVersion.Status.SERVING
    assert PromotionLog.objects.filter(decision="rejected", to_version=bad).exists()


@pytest.mark.django_db
def test_an_override_needs_a_reason_is_logged_and_can_be_rolled_back(
    client_for, good_and_bad_versions
):
    good, bad = good_and_bad_versions
    engineer = client_for("ml_engineer")
    engineer.post(f"/api/models/{good.id}/promote/")

    forced = engineer.post(
        f"/api/models/{bad.id}/promote/", {"override_reason": "shadow test"}, format="json"
    )
    rolled_back = engineer.post(f"/api/models/{bad.id}/rollback/")

    assert forced.status_code == 200
    assert forced.json()["decision"] == "overridden"
    assert forced.json()["reason"] == "shadow test"
    assert forced.json()["actor"] == engineer.user.username
    assert rolled_back.status_code == 200, rolled_back.json()
    assert rolled_back.json()["action"] == "rollback"
    assert rolled_back.json()["to_version"] == good.version
    assert ModelVersion.objects.get(status="serving") == good
    assert list(PromotionLog.objects.values_list("action", "decision")) == [
        ("rollback", "promoted"),
        ("promote", "overridden"),
        ("promote", "promoted"),
    ]


@pytest.mark.django_db
def test_only_ml_engineers_promote_and_start_training(client_for, good_and_bad_versions):
    good, _ = good_and_bad_versions

    for role in ("clinician", "radiologist"):
        client = client_for(role)
        assert client.post(f"/api/models/{good.id}/promote/").status_code == 403
        assert client.post("/api/training-runs/").status_code == 403
        assert client.get("/api/training-runs/").status_code == 403
    assert not PromotionLog.objects.exists()


def confirm_labels(user, count: int, *, start: int = 0) -> None:
    from django.utils import timezone

    from tests.factories import make_scan

    for index in range(start, start + count):
        make_scan(
            user,
            status=Scan.Status.IMPORTED,
            confirmed_label="stone" if index % 2 else "normal",
            confirmed_by=user,
            confirmed_at=timezone.now(),
        )


@pytest.mark.django_db
def test_beat_starts_a_run_at_n_new_labels_and_not_before(client_for, settings):
    settings.KIDNEY_RETRAIN_MIN_NEW_LABELS = 10
    settings.KIDNEY_SPLIT_GAP = 0
    user = client_for("radiologist").user

    confirm_labels(user, 9)
    assert retrain_if_enough_new_labels.apply().get() is None
    confirm_labels(user, 1, start=9)
    run_id = retrain_if_enough_new_labels.apply().get()

    started = TrainingRun.objects.get()
    assert started.pk == run_id
    assert started.trigger == TrainingRun.Trigger.SCHEDULE
    assert started.manifest_size == 10 - 2  # the evaluation set (last block) is planned apart
    assert len(manifest_load(started.evaluation_manifest_digest)) == 2
    assert not EvaluationSet.objects.exists()  # frozen once the run has a candidate
    assert retrain_if_enough_new_labels.apply().get() is None  # one is already queued


@pytest.mark.django_db
def test_a_second_training_request_is_refused_while_one_is_queued(client_for, settings):
    settings.KIDNEY_SPLIT_GAP = 0
    engineer = client_for("ml_engineer")
    confirm_labels(engineer.user, 12)

    first = engineer.post("/api/training-runs/", {"epochs": 2}, format="json")
    second = engineer.post("/api/training-runs/", {}, format="json")

    assert first.status_code == 202, first.json()
    assert first.json()["status"] == "queued"
    assert first.json()["parameters"]["epochs"] == 2
    assert second.status_code == 409
    assert second.json()["active_run"] == first.json()["id"]
    assert TrainingRun.objects.count() == 1


@pytest.mark.django_db
def test_the_database_allows_one_active_run_whatever_the_caller():
    from ml_core.datasets import LabelledImage

    entries = [LabelledImage("/x.png", "normal", 0, sha256="a")]
    training_run_create(entries=entries, parameters={}, data_source="t", trigger="command",
                        enqueue=False)  # fmt: skip

    with pytest.raises(TrainingRunActive):
        training_run_create(entries=entries, parameters={}, data_source="t", trigger="command",
                            enqueue=False)  # fmt: skip


@pytest.mark.django_db
def test_a_rollback_to_a_version_the_gate_refuses_takes_an_override_reason(
    client_for, good_and_bad_versions, settings, admin_client
):
    import keras

    _, bad = good_and_bad_versions
    keras.utils.set_random_seed(6)
    worse = register(build_classifier(["normal", "stone"], 64, "none"), 0.5)
    engineer = client_for("ml_engineer")
    engineer.post(f"/api/models/{bad.id}/promote/", {"override_reason": "pilot"}, format="json")
    engineer.post(f"/api/models/{worse.id}/promote/", {"override_reason": "pilot"}, format="json")
    settings.KIDNEY_PROMOTION_MIN_AUC = 0.99  # what served before fails the gate too

    refused = engineer.post(f"/api/models/{worse.id}/rollback/")
    overridden = engineer.post(
        f"/api/models/{worse.id}/rollback/", {"override_reason": "back to v2"}, format="json"
    )

    assert refused.status_code == 409
    assert refused.json()["decision"] == "rejected"
    assert overridden.status_code == 200
    assert (overridden.json()["action"], overridden.json()["decision"]) == (
        "rollback",
        "overridden",
    )
    assert overridden.json()["reason"] == "back to v2"
    assert ModelVersion.objects.get(status="serving") == bad
    # The log keeps each version's status when it was decided, and the reason, in the admin.
    assert (overridden.json()["from_status"], overridden.json()["to_status"]) == (
        "serving",
        "retired",
    )
    log = admin_client.get("/admin/training/promotionlog/").content.decode()
    assert "back to v2" in log
    assert "retired" in log
