"""Nothing lost under faults: a load of uploads while workers are killed with SIGKILL and
Redis is restarted (losing every queued message), then a count of where every scan ended.

The stack is real and multi-process: gunicorn, two inference workers, beat (the sweep every
--sweep-seconds), a private Redis that keeps nothing on disk, and PostgreSQL. The last line is

    uploaded N, predicted P, failed F, lost L

where lost = accepted uploads that ended neither predicted nor failed. Run:

    .venv/bin/python bench/faults.py [--data ../shared/data/kidney-ct] [--uploads 300]
        [--database-url postgres://postgres@127.0.0.1:5432/kidney_faults]

The database is dropped and created afresh (it must not be one you keep data in).
"""

import argparse
import contextlib
import random
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlsplit

import psycopg
import requests

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))
from bench.inference import upload_payloads  # noqa: E402
from bench.stack import isolated_environment, manage  # noqa: E402
from tests.processes import Processes, free_port, wait_until  # noqa: E402

WORKERS = ("worker-1", "worker-2")


def recreate_database(url: str) -> None:
    parts = urlsplit(url)
    name = parts.path.lstrip("/")
    admin = parts._replace(path="/postgres").geturl()
    with psycopg.connect(admin, autocommit=True) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        connection.execute(f'CREATE DATABASE "{name}"')


def prepare(environment: dict, sweep_seconds: int) -> str:
    """Migrate, bootstrap a model, make the sweep frequent; return an API token."""
    manage(environment, "migrate", "--noinput")
    manage(
        environment,
        "bootstrap_model",
        "--force",
        "--placeholder",
        "--samples",
        "64",
        "--epochs",
        "2",
    )
    manage(
        environment,
        "shell",
        "-c",
        "from django_celery_beat.models import IntervalSchedule, PeriodicTask; "
        f"every, _ = IntervalSchedule.objects.get_or_create(every={sweep_seconds}, "
        "period='seconds'); "
        "PeriodicTask.objects.filter(task='scans.tasks.requeue_stale_scans')"
        ".update(interval=every)",
    )
    return manage(environment, "create_api_user", "bench", "--role", "clinician").split()[-1]


class Chaos(threading.Thread):
    """Every `interval` seconds, SIGKILL a worker (and start a fresh one) or restart Redis."""

    def __init__(self, processes: Processes, redis_port: int, interval: float, seed: int):
        super().__init__(daemon=True)
        self.processes, self.redis_port, self.interval = processes, redis_port, interval
        self.random = random.Random(seed)
        self.stopping = threading.Event()
        self.kills = self.restarts = 0

    def run(self) -> None:
        while not self.stopping.wait(self.interval):
            if self.random.random() < 0.7:
                victim = self.random.choice(WORKERS)
                self.processes.kill(victim)
                self.processes.worker(victim)
                self.kills += 1
            else:
                self.processes.stop("redis")
                self.processes.redis(self.redis_port)
                self.restarts += 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", help="kidney-ct folder (class subfolders); else phantoms")
    parser.add_argument("--uploads", type=int, default=300)
    parser.add_argument(
        "--database-url", default="postgres://postgres@127.0.0.1:5432/kidney_faults"
    )
    parser.add_argument("--chaos-seconds", type=float, default=4.0, help="time between faults")
    parser.add_argument("--chaos-max-seconds", type=float, default=120)
    parser.add_argument("--sweep-seconds", type=int, default=5)
    parser.add_argument("--finish-seconds", type=float, default=600)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    recreate_database(args.database_url)
    data_dir = Path(tempfile.mkdtemp(prefix="kidney-faults-"))
    redis_port, web_port = free_port(), free_port()
    environment = isolated_environment(
        str(data_dir),
        DATABASE_URL=args.database_url,
        CELERY_BROKER_URL=f"redis://127.0.0.1:{redis_port}/0",
        KIDNEY_UPLOAD_RATE="100000/minute",
        KIDNEY_EVIDENCE_MAPS="on_request",
        # Production waits minutes; the bench shortens the sweep's patience with the faults.
        KIDNEY_REQUEUE_QUEUED_AFTER_SECONDS="10",
        KIDNEY_CLAIM_TIMEOUT_SECONDS="20",
    )
    token = prepare(environment, args.sweep_seconds)
    payloads = upload_payloads(args.data, args.uploads)
    session = requests.Session()
    session.headers["Authorization"] = f"Token {token}"
    base = f"http://127.0.0.1:{web_port}/api"

    with Processes(environment, data_dir / "logs") as processes:
        processes.redis(redis_port)
        processes.web(web_port)
        for name in WORKERS:
            processes.worker(name)
        processes.beat()
        chaos = Chaos(processes, redis_port, args.chaos_seconds, args.seed)
        started = time.perf_counter()
        chaos.start()

        def upload(data: bytes) -> str | None:
            for _ in range(5):  # a client retries what the server did not answer
                try:
                    response = session.post(f"{base}/scans/", files={"file": data}, timeout=60)
                except requests.RequestException:
                    time.sleep(1)
                    continue
                if response.status_code in (200, 202):
                    return response.json()["id"]
                time.sleep(1)
            return None

        with ThreadPoolExecutor(max_workers=4) as pool:
            scan_ids = [scan_id for scan_id in pool.map(upload, payloads) if scan_id]
        uploading = time.perf_counter() - started

        def counts() -> dict:
            def count(status: str) -> int:
                listing = session.get(f"{base}/scans/", params={"status": status}, timeout=30)
                return listing.json()["count"]

            for _ in range(30):  # the web server may be reconnecting; ask again
                with contextlib.suppress(requests.RequestException, KeyError, ValueError):
                    return {status: count(status) for status in ("predicted", "failed")}
                time.sleep(1)
            raise RuntimeError("The API did not answer")

        def settled() -> bool:
            current = counts()
            return current["predicted"] + current["failed"] >= len(scan_ids)

        # Faults go on while scans are being classified, up to --chaos-max-seconds.
        with contextlib.suppress(TimeoutError):
            wait_until(settled, timeout=args.chaos_max_seconds, interval=1, what="chaos")
        chaos.stopping.set()
        chaos.join()
        with contextlib.suppress(TimeoutError):
            wait_until(settled, timeout=args.finish_seconds, interval=1, what="every scan")
        elapsed = time.perf_counter() - started
        final = counts()

    lost = len(scan_ids) - final["predicted"] - final["failed"]
    print(
        f"{len(payloads)} uploads sent in {uploading:.0f} s with {chaos.kills} worker SIGKILLs "
        f"and {chaos.restarts} Redis restarts in all; settled after {elapsed:.0f} s"
    )
    print(
        f"uploaded {len(scan_ids)}, predicted {final['predicted']}, failed {final['failed']}, "
        f"lost {lost}"
    )
    if lost:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
