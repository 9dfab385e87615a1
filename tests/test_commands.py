"""Management commands, called as a user calls them."""

import io

import pytest
from django.core.management import call_command
from rest_framework.test import APIClient

from training.models import ModelVersion

QUICK_BOOTSTRAP = ["--placeholder", "--input-size", "32", "--samples", "48", "--epochs", "2"]


def run(*arguments) -> str:
    output = io.StringIO()
    call_command(*arguments, stdout=output, stderr=io.StringIO())
    return output.getvalue()


@pytest.mark.django_db
def test_create_api_user_prints_a_working_token_as_its_last_line():
    token = run("create_api_user", "dr-who", "--role", "clinician").strip().splitlines()[-1]
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token}")

    assert client.get("/api/scans/").status_code == 200


@pytest.mark.django_db
def test_create_api_user_again_changes_the_role_and_issues_a_fresh_token():
    first = run("create_api_user", "sam", "--role", "clinician").split()[-1]
    second = run("create_api_user", "sam", "--role", "ml_engineer").split()[-1]

    from django.contrib.auth import get_user_model
    from rest_framework.test import APIClient

    user = get_user_model().objects.get(username="sam")
    assert first != second
    for key in (first, second):  # the first keeps working until it expires or is revoked
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
        assert client.get("/api/models/").status_code == 200
    assert list(user.groups.values_list("name", flat=True)) == ["ml_engineer"]
    assert not user.has_usable_password()


@pytest.mark.django_db
def test_create_api_user_refuses_an_unknown_role():
    from django.core.management.base import CommandError

    with pytest.raises(CommandError, match="invalid choice"):
        run("create_api_user", "eve", "--role", "superuser")


@pytest.mark.django_db
def test_bootstrap_serves_a_placeholder_once_then_force_replaces_it():
    output = run("bootstrap_model", *QUICK_BOOTSTRAP)

    first = ModelVersion.objects.get()
    assert first.status == ModelVersion.Status.SERVING
    assert first.input_size == 32
    assert first.classes == ["normal", "stone"]
    assert 0.0 <= first.threshold <= 1.0
    assert set(first.metrics["validation"]) >= {"sensitivity", "specificity", "auc"}
    assert "not a medical model" in first.description
    assert "sensitivity" in output
    assert "not a medical model" in output

    assert "already serves" in run("bootstrap_model", *QUICK_BOOTSTRAP)
    assert ModelVersion.objects.count() == 1

    run("bootstrap_model", *QUICK_BOOTSTRAP, "--force")
    versions = {v.version: v.status for v in ModelVersion.objects.all()}
    assert versions == {1: ModelVersion.Status.RETIRED, 2: ModelVersion.Status.SERVING}


def _ship_tiny_model(folder) -> dict:
    """A shipped model as bench/base_model.py writes one, at 32 px, untrained."""
    from ml_core.classifier import build_classifier
    from ml_core.preprocessing import PreprocessingConfig
    from ml_core.shipped import save_shipped

    held_out = {"n": {"stone": 40, "normal": 60}, "auc": 0.91, "sensitivity": 0.9,
                "specificity": 0.8, "interval_95": {"auc": [0.85, 0.95]}}  # fmt: skip
    report = {"command": "bench/base_model.py --data DEV", "config": {"epochs": 1},
              "validation": {"auc": 0.99, "sensitivity": 0.95, "specificity": 0.9},
              "held_out": held_out}  # fmt: skip
    model = build_classifier(["normal", "stone", "cyst"], 32, "none")
    description = {
        "classes": ["normal", "stone", "cyst"],
        "threshold": 0.25,
        "preprocessing": PreprocessingConfig(input_size=32, normalisation="unit").to_dict(),
        "report": report,
    }
    save_shipped(model, description, folder)
    return {"model": model, "report": report}


@pytest.mark.django_db
def test_bootstrap_serves_the_shipped_model_with_its_held_out_report_and_card(
    tmp_path, settings, client_for
):
    import keras
    import numpy as np

    from training.files import artifact_local_path
    from training.models import SHIPPED_NOTE

    settings.KIDNEY_SHIPPED_MODEL_DIR = tmp_path / "shipped"
    shipped = _ship_tiny_model(settings.KIDNEY_SHIPPED_MODEL_DIR)

    output = run("bootstrap_model")

    version = ModelVersion.objects.get()
    assert version.status == ModelVersion.Status.SERVING
    assert (version.version, version.input_size, version.threshold) == (1, 32, 0.25)
    assert version.classes == ["normal", "stone", "cyst"]
    assert version.description == SHIPPED_NOTE
    assert not version.is_placeholder
    assert version.mlflow_version
    assert "ROC AUC 0.910" in output
    # The registered artifact is the shipped network, weights and all (float16-stored).
    served = keras.models.load_model(artifact_local_path(version.artifact), compile=False)
    inputs = np.random.default_rng(0).uniform(-1, 1, (2, 32, 32, 3)).astype(np.float32)
    expected = shipped["model"].predict(inputs, verbose=0)
    np.testing.assert_allclose(served.predict(inputs, verbose=0), expected, atol=2e-3)

    body = client_for("clinician").get(f"/api/models/{version.pk}/").json()
    assert body["metrics"]["held_out"]["auc"] == 0.91
    assert body["metrics"]["held_out"]["interval_95"]["auc"] == [0.85, 0.95]
    assert body["metrics"]["made_by"] == "bench/base_model.py --data DEV"
    assert body["model_card"] == "http://testserver/model-card/"
    card = client_for("clinician").get("/model-card/")
    assert card["Content-Type"].startswith("text/markdown")
    assert b"Intended use" in b"".join(card.streaming_content)
    page = client_for("clinician").get("/model-card/", HTTP_ACCEPT="text/html,*/*;q=0.8")
    assert page["Content-Type"].startswith("text/html")
    assert "<h2>Intended use</h2>" in page.content.decode()  # rendered, not raw Markdown
    assert "<table>" in page.content.decode()
    assert "## Intended use" not in page.content.decode()


@pytest.mark.django_db
def test_bootstrap_falls_back_to_the_placeholder_where_no_model_is_shipped(tmp_path, settings):
    settings.KIDNEY_SHIPPED_MODEL_DIR = tmp_path / "empty"

    output = run("bootstrap_model", *QUICK_BOOTSTRAP[1:])

    version = ModelVersion.objects.get()
    assert version.is_placeholder
    assert version.model_card == ""
    assert "not a medical model" in output
