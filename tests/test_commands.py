"""Management commands, called as a user calls them."""

import io

import pytest
from django.core.management import call_command
from rest_framework.test import APIClient

from training.models import ModelVersion

QUICK_BOOTSTRAP = ["--input-size", "32", "--samples", "48", "--epochs", "2"]


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
