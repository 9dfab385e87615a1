"""Nothing is lost under faults, on real processes: a gunicorn web server, Celery workers and
beat on a private Redis (so it can be restarted and workers killed without touching the
session's own), the test database, and a proxy that can cut the web server off from it."""

import os
import uuid

import pytest
import redis
import requests
from django.conf import settings
from django_celery_beat.models import IntervalSchedule, PeriodicTask

from accounts.roles import Role
from accounts.services import api_user_upsert
from scans.models import Prediction, Scan
from tests.conftest import TEST_DATA_DIR, _test_database_url
from tests.images import phantom_png
from tests.processes import Processes, TcpProxy, free_port, wait_until

pytestmark = pytest.mark.django_db(transaction=True)

SWEEP_EVERY_SECONDS = 2
FINISH_SECONDS = 120


class Stack:
    """A web server and a Redis of the test's own; workers and beat started by the test."""

    def __init__(self, processes: Processes, redis_port: int, web_port: int, token: str):
        self.processes = processes
        self.redis_port = redis_port
        self.base_url = f"http://127.0.0.1:{web_port}"
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Token {token}"

    def upload(self, data: bytes) -> requests.Response:
        return self.session.post(
            f"{self.base_url}/api/scans/", files={"file": ("slice.png", data)}, timeout=30
        )

    def upload_new(self, data: bytes) -> str:
        response = self.upload(data)
        assert response.status_code == 202, response.text
        return response.json()["id"]

    def queued_messages(self) -> int:
        return redis.Redis(port=self.redis_port).llen("inference")

    def restart_redis(self) -> None:
        self.processes.stop("redis")
        self.processes.redis(self.redis_port)

    def start_sweeping(self) -> None:
        """The sweep as beat runs it, on a short interval (the schedule is editable)."""
        every, _ = IntervalSchedule.objects.get_or_create(
            every=SWEEP_EVERY_SECONDS, period=IntervalSchedule.SECONDS
        )
        PeriodicTask.objects.update_or_create(
            task="scans.tasks.requeue_stale_scans",
            defaults={"name": "sweep", "interval": every, "enabled": True},
        )
        self.processes.beat()


def stack_environment(redis_port: int, database_url: str) -> dict:
    return dict(
        os.environ,
        DATABASE_URL=database_url,
        CELERY_BROKER_URL=f"redis://127.0.0.1:{redis_port}/0",
        KIDNEY_DATA_DIR=str(TEST_DATA_DIR),
        KIDNEY_INFERENCE_BATCH_SIZE="4",
        # Short enough for a test; production waits minutes (see settings).
        KIDNEY_REQUEUE_QUEUED_AFTER_SECONDS="3",
        KIDNEY_CLAIM_TIMEOUT_SECONDS="5",
    )


@pytest.fixture
def stack_parts(serving_model):
    _, token = api_user_upsert(username="fault-clinician", role=Role.CLINICIAN)
    redis_port, web_port = free_port(), free_port()
    return redis_port, web_port, token


@pytest.fixture
def stack(stack_parts):
    redis_port, web_port, token = stack_parts
    environment = stack_environment(redis_port, _test_database_url())
    with Processes(environment, TEST_DATA_DIR / f"stack-{uuid.uuid4().hex[:8]}") as processes:
        processes.redis(redis_port)
        processes.web(web_port)
        yield Stack(processes, redis_port, web_port, token)
        for name in list(processes.running):
            print(f"--- {name} ---\n{processes.log(name)}")


def wait_all_predicted(scan_ids: list[str]) -> None:
    def finished() -> bool:
        return Scan.objects.filter(pk__in=scan_ids, status=Scan.Status.PREDICTED).count() == len(
            scan_ids
        )

    wait_until(finished, timeout=FINISH_SECONDS, what=f"{len(scan_ids)} scans to be predicted")
    assert Prediction.objects.filter(scan_id__in=scan_ids).count() == len(scan_ids)


def test_a_worker_killed_with_sigkill_mid_batch_loses_no_scan(stack, tmp_path):
    held = tmp_path / "held-batch"
    # The worker writes the scans it claimed to `held`, then waits inside the batch.
    stack.processes.worker("worker-a", KIDNEY_TEST_HOLD_BATCH_FILE=str(held))
    scan_ids = [stack.upload_new(phantom_png(seed=100 + seed)) for seed in range(12)]

    wait_until(held.exists, timeout=60, what="the worker to hold a batch")
    stack.processes.kill("worker-a")

    in_hand = held.read_text().split()
    assert in_hand
    stranded = Scan.objects.filter(pk__in=scan_ids, status=Scan.Status.PROCESSING)
    assert sorted(str(pk) for pk in stranded.values_list("pk", flat=True)) == sorted(in_hand)
    stack.processes.worker("worker-b")
    stack.start_sweeping()
    wait_all_predicted(scan_ids)
    assert not Scan.objects.filter(pk__in=scan_ids, status=Scan.Status.FAILED).exists()
    assert set(
        map(str, Scan.objects.filter(pk__in=in_hand, attempts=2).values_list("pk", flat=True))
    ) == set(in_hand)  # claimed again after the kill, and predicted


def test_a_redis_restart_loses_queued_messages_but_the_sweep_recovers_every_scan(stack):
    # No worker yet: the messages wait in Redis, which keeps nothing on disk.
    scan_ids = [stack.upload_new(phantom_png(seed=200 + seed)) for seed in range(8)]
    assert stack.queued_messages() == len(scan_ids)

    stack.restart_redis()

    assert stack.queued_messages() == 0
    scan_ids.append(stack.upload_new(phantom_png(seed=299)))  # the web server reconnects
    stack.processes.worker("worker")
    stack.start_sweeping()
    wait_all_predicted(scan_ids)


def test_uploads_while_redis_is_down_are_kept_and_classified_once_it_is_back(stack):
    stack.processes.stop("redis")

    scan_id = stack.upload_new(phantom_png(seed=300))

    assert Scan.objects.get(pk=scan_id).status == Scan.Status.QUEUED
    stack.processes.redis(stack.redis_port)
    stack.processes.worker("worker")
    stack.start_sweeping()
    wait_all_predicted([scan_id])


def test_the_api_answers_503_while_the_database_is_unreachable_and_recovers_by_itself(
    stack_parts,
):
    redis_port, web_port, token = stack_parts
    database = settings.DATABASES["default"]
    with TcpProxy(int(database["PORT"] or 5432), database["HOST"]) as proxy:
        proxied = _test_database_url().replace(
            f"@{database['HOST']}:{database['PORT'] or 5432}/", f"@127.0.0.1:{proxy.port}/"
        )
        environment = stack_environment(redis_port, proxied)
        # Connections kept between requests, as in production: they go stale in the outage.
        environment["DATABASE_CONN_MAX_AGE"] = "600"
        with Processes(environment, TEST_DATA_DIR / f"db-{uuid.uuid4().hex[:8]}") as processes:
            processes.redis(redis_port)
            processes.web(web_port)
            stack = Stack(processes, redis_port, web_port, token)
            health = f"{stack.base_url}/healthz"
            assert stack.session.get(f"{stack.base_url}/api/scans/").status_code == 200
            assert requests.get(health, timeout=10).status_code == 200

            proxy.cut()
            listing = stack.session.get(f"{stack.base_url}/api/scans/", timeout=30)
            upload = stack.upload(phantom_png(seed=400))
            unhealthy = requests.get(health, timeout=30)

            assert listing.status_code == 503
            assert listing.headers["Content-Type"] == "application/json"
            assert "database is unavailable" in listing.json()["detail"]
            assert listing.headers["Retry-After"]
            assert upload.status_code == 503
            assert unhealthy.status_code == 503
            assert unhealthy.json()["database"]["ok"] is False

            proxy.restore()
            wait_until(
                lambda: stack.session.get(f"{stack.base_url}/api/scans/").status_code == 200,
                timeout=30,
                what="the API to recover",
            )
            assert requests.get(health, timeout=10).json()["database"]["ok"] is True
            assert stack.upload(phantom_png(seed=401)).status_code == 202
    assert Scan.objects.count() == 1  # the upload refused in the outage left no row
