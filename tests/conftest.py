"""Test wiring: real PostgreSQL, real Redis, a real Celery worker process, a tiny real model.

PostgreSQL and Redis are required: if either is unreachable the session stops with an error
(never a skip). KIDNEY_TEST_DATABASE_URL and KIDNEY_TEST_BROKER_URL choose them; the defaults
are the local services. Runtime files go to a fresh temporary data folder, never ./var.
"""

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import quote

import pytest

from tests.dicom_files import STUDY_STONE_RADIUS
from tests.processes import wait_until

TEST_DATA_DIR = Path(tempfile.mkdtemp(prefix="kidney-test-"))
os.environ["KIDNEY_DATA_DIR"] = str(TEST_DATA_DIR)
# Tests never pick up a deployment's DATABASE_URL or CELERY_BROKER_URL: they purge queues.
os.environ["DATABASE_URL"] = os.environ.get(
    "KIDNEY_TEST_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/kidney"
)
os.environ["CELERY_BROKER_URL"] = os.environ.get(
    "KIDNEY_TEST_BROKER_URL", "redis://127.0.0.1:6379/15"
)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# Every process of the session reads and writes media through a storage with no local paths,
# as an S3-compatible store would (tests/storage.py).
os.environ["KIDNEY_STORAGE_BACKEND"] = "tests.storage.NoLocalPathStorage"
# An MLflow server that does not answer is given up on at once.
os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] = "0"
os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] = "5"
# Threads (the live server's, the tests' own) must not leave connections open at teardown.
os.environ["DATABASE_CONN_MAX_AGE"] = "0"
# Tests train on a handful of images: their evaluation sets may be that small too (the test
# of the minimum sets its own).
os.environ["KIDNEY_EVALUATION_MIN_PER_CLASS"] = "1"
# Int8 twins cost seconds per version; tests/test_int8.py turns them on where it tests them.
os.environ["KIDNEY_INT8_TWINS"] = "0"
# Where a version has a twin that passed, the worker serves it, whatever it times (auto would
# choose by speed on the tiny test model).
os.environ["KIDNEY_INFERENCE_RUNTIME"] = "openvino-int8"
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "kidneyproject.settings")

from django.conf import settings  # noqa: E402

# Loading the settings now lets pytest-django set Django up with the environment above.
settings.DATABASES  # noqa: B018

REPO_ROOT = Path(__file__).resolve().parent.parent
TEST_INPUT_SIZE = 32
CELERY_QUEUES = ("inference", "training", "default")
WORKER_START_SECONDS = 90


def pytest_sessionstart(session):
    problems = []
    engine = settings.DATABASES["default"]["ENGINE"]
    if "postgresql" not in engine:
        problems.append(f"DATABASE_URL must point at PostgreSQL (got {engine}).")
    else:
        import psycopg

        database = settings.DATABASES["default"]
        try:
            psycopg.connect(
                host=database["HOST"],
                port=database["PORT"] or 5432,
                user=database["USER"],
                password=database["PASSWORD"] or None,
                dbname="postgres",
                connect_timeout=5,
            ).close()
        except psycopg.Error as error:
            problems.append(f"PostgreSQL is unreachable: {error}")
    if not settings.CELERY_BROKER_URL.startswith("redis://"):
        problems.append("CELERY_BROKER_URL must point at Redis.")
    else:
        import redis

        try:
            redis.Redis.from_url(settings.CELERY_BROKER_URL, socket_timeout=5).ping()
        except redis.RedisError as error:
            problems.append(f"Redis is unreachable: {error}")
    if problems:
        pytest.exit(
            "The tests need real services; start them (see README, 'Tests'):\n  "
            + "\n  ".join(problems),
            returncode=3,
        )


def pytest_sessionfinish(session, exitstatus):
    if exitstatus == 0:
        shutil.rmtree(TEST_DATA_DIR, ignore_errors=True)
    else:  # keep the worker's log and the stored files for a look
        print(f"\nTest data (worker.log, media) kept in {TEST_DATA_DIR}")


@pytest.fixture(scope="session")
def tiny_model_artifact() -> dict:
    """A real VGG16 classifier at 32 px, briefly trained on phantoms, stored once a session.

    Returns the ModelVersion fields that describe it.
    """
    from ml_core.training import train_on_phantoms

    trained = train_on_phantoms(
        input_size=TEST_INPUT_SIZE, samples=64, epochs=2, target_sensitivity=0.95
    )
    return _stored(trained, "test-model.keras")


def _stored(trained, name: str) -> dict:
    """Save a trained classifier into storage; return the ModelVersion fields of it."""
    from training.files import artifact_store

    saved = TEST_DATA_DIR / name
    trained.model.save(saved)
    preprocessing = trained.preprocessing.to_dict()
    return {
        "classes": trained.classes,
        "input_size": preprocessing.pop("input_size"),
        "preprocessing": preprocessing,
        "threshold": trained.threshold,
        "study_rule": trained.study_rule.to_dict(),
        "study_threshold": trained.study_threshold,
        "artifact": artifact_store(saved),
    }


@pytest.fixture(scope="session")
def study_model_artifact() -> dict:
    """A tiny real model that tells phantom stones apart at once: stones as large as
    tests.dicom_files.phantom_study draws, at 32 px. For the study rule's end-to-end tests."""
    from ml_core.training import train_on_phantoms

    trained = train_on_phantoms(
        input_size=TEST_INPUT_SIZE,
        samples=256,
        epochs=30,
        target_sensitivity=0.95,
        stone_radius=STUDY_STONE_RADIUS,
    )
    return _stored(trained, "study-model.keras")


@pytest.fixture
def serving_study_model(study_model_artifact, django_db_blocker):
    from training.models import ModelVersion

    with django_db_blocker.unblock():
        return ModelVersion.objects.create(
            version=1, status=ModelVersion.Status.SERVING, **study_model_artifact
        )


@pytest.fixture
def serving_model(tiny_model_artifact, django_db_blocker):
    """A serving ModelVersion row for the session's tiny model (rows vanish between tests)."""
    from training.models import ModelVersion

    with django_db_blocker.unblock():
        return ModelVersion.objects.create(
            version=1, status=ModelVersion.Status.SERVING, **tiny_model_artifact
        )


def _test_database_url() -> str:
    from django.db import connection

    database = connection.settings_dict
    password = f":{quote(database['PASSWORD'])}" if database["PASSWORD"] else ""
    return (
        f"postgres://{quote(database['USER'])}{password}@{database['HOST']}:"
        f"{database['PORT'] or 5432}/{database['NAME']}"
    )


def _purge_test_queues() -> None:
    import redis

    client = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    client.delete(*CELERY_QUEUES, "unacked", "unacked_index", "unacked_mutex")


@pytest.fixture(scope="session")
def celery_worker_process(django_db_setup, django_db_blocker):
    """A real `celery worker` process on all three queues, against Redis and
    the test database. Tests that use it need transactional database access so that the
    worker sees their committed rows."""
    from kidneyproject.celery import app

    _purge_test_queues()
    environment = dict(os.environ, DATABASE_URL=_test_database_url())
    log_path = TEST_DATA_DIR / "worker.log"
    with open(log_path, "wb") as log:
        worker = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "kidneyproject",
                "worker",
                "-Q",
                "inference,training,default",
                "-c",
                "2",
                "-n",
                f"test-{os.getpid()}@%h",
                "--loglevel=INFO",
            ],
            cwd=REPO_ROOT,
            env=environment,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    deadline = time.monotonic() + WORKER_START_SECONDS
    while not app.control.ping(timeout=1.0):
        if worker.poll() is not None or time.monotonic() > deadline:
            worker.kill()
            pytest.fail(f"The Celery worker did not start:\n{log_path.read_text()[-4000:]}")
    yield worker
    worker.terminate()
    try:
        worker.wait(timeout=30)
    except subprocess.TimeoutExpired:
        worker.kill()


def wait_for(condition, *, timeout: float, interval: float = 0.2, message: str = ""):
    """Poll `condition` until it returns a truthy value; fail the test after `timeout`."""
    try:
        return wait_until(condition, timeout=timeout, interval=interval, what=message)
    except TimeoutError as error:
        pytest.fail(str(error))


@pytest.fixture
def client_for(db):
    """client_for("clinician") -> an APIClient authenticated by that role's real API token."""
    from rest_framework.test import APIClient

    from accounts.roles import Role
    from accounts.services import api_user_upsert

    def make(role: str, username: str | None = None):
        user, token = api_user_upsert(username=username or f"{role}-user", role=Role(role))
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
        client.user = user
        return client

    return make


CHROMIUM = os.environ.get("KIDNEY_TEST_CHROMIUM", "/usr/bin/chromium")


@pytest.fixture
def browser(monkeypatch):
    from playwright.sync_api import sync_playwright

    # Playwright's sync API keeps an event loop in this thread; the test's own database
    # calls are still plain synchronous ones.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    if not shutil.which(CHROMIUM):
        pytest.fail(
            f"Chromium is required for the browser test ({CHROMIUM}); `make test` installs it "
            "(tests/setup.sh)."
        )
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
            ],
        )
        yield launched
        launched.close()
        # Database calls made while Playwright's loop runs get a context-local connection
        # of their own; close it here, where it lives.
        from django.db import connections

        connections.close_all()
