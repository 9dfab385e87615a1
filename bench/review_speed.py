"""Reading speed: reviews per minute by keyboard alone on the review page, real service.

The service starts with `runstack` on the embedded default in a data folder of its own
(gunicorn, the inference worker, beat), serving the shipped model (--model placeholder: the
phantom placeholder). --scans slices are uploaded over REST and classified by the worker;
then headless Chromium (Playwright) logs a radiologist in and confirms every queued scan with
`c`, each keystroke sent as soon as the page shows the previous review saved (the queue's
progress counter moved on): no forced wait anywhere. Printed: reviews per minute, and the
median and 90th percentile time from a keystroke to the next scan on screen.

    .venv/bin/python bench/review_speed.py --data ../shared/data/kidney-ct [--scans 50]

Without --data the uploads are synthetic phantoms. Needs Chromium (tests/setup.sh installs it).
"""

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))
from bench.inference import upload_payloads  # noqa: E402
from bench.stack import isolated_environment, manage  # noqa: E402
from tests.processes import free_port, wait_until  # noqa: E402

PASSWORD = "bench-review-password-1"
CHROMIUM = os.environ.get("KIDNEY_TEST_CHROMIUM", "/usr/bin/chromium")


def prepare(args, environment: dict) -> str:
    """Migrate, serve a model, make the users; return the clinician's API token."""
    manage(environment, "migrate", "--noinput")
    manage(environment, "bootstrap_model", *(["--placeholder"] if args.model == "placeholder"
                                             else []))  # fmt: skip
    token = manage(environment, "create_api_user", "bench-clinician", "--role", "clinician")
    manage(environment, "create_api_user", "bench-reader", "--role", "radiologist")
    manage(environment, "shell", "-c",
           "from django.contrib.auth import get_user_model; "
           "user = get_user_model().objects.get(username='bench-reader'); "
           f"user.set_password({PASSWORD!r}); user.save()")  # fmt: skip
    return token.split()[-1]


def upload_all(base: str, token: str, images: list[bytes]) -> None:
    session = requests.Session()
    session.headers["Authorization"] = f"Token {token}"
    for image in images:
        session.post(f"{base}/api/scans/", files={"file": image}).raise_for_status()

    def all_predicted() -> bool:
        listing = session.get(f"{base}/api/scans/", params={"status": "predicted"}).json()
        return listing["count"] == len(images)

    wait_until(all_predicted, timeout=1800, interval=1, what="every upload to be classified")


def read_by_keyboard(base: str, count: int) -> list[float]:
    """Seconds from each `c` to the next scan on screen, for `count` reviews."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run"],
        )  # fmt: skip
        page = browser.new_page(viewport={"width": 1600, "height": 1000})
        page.goto(f"{base}/review/")
        page.fill("input[name=username]", "bench-reader")
        page.fill("input[name=password]", PASSWORD)
        page.click("button[type=submit]")
        page.wait_for_selector("#current:not([hidden])")
        page.wait_for_function(f"document.getElementById('progress').textContent.endsWith("
                               f"'{count} waiting')")  # fmt: skip
        page.click("h2")  # keys are commands outside the note field
        seconds = []
        for done in range(1, count + 1):
            started = time.perf_counter()
            page.keyboard.press("c")
            page.wait_for_function(
                "parseInt(document.getElementById('progress').textContent) === " + str(done)
            )
            seconds.append(time.perf_counter() - started)
        browser.close()
    return seconds


def healthy(base: str) -> bool:
    try:
        return requests.get(f"{base}/healthz", timeout=5).ok
    except requests.RequestException:
        return False


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", help="kidney-ct folder (class subfolders); else phantoms")
    parser.add_argument("--scans", type=int, default=50)
    parser.add_argument("--model", choices=["shipped", "placeholder"], default="shipped")
    args = parser.parse_args()
    environment = isolated_environment(tempfile.mkdtemp(prefix="kidney-review-bench-"))
    token = prepare(args, environment)
    port = free_port()
    stack = subprocess.Popen(
        [sys.executable, "manage.py", "runstack", "--port", str(port)],
        cwd=REPO_ROOT, env=environment, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: healthy(base), timeout=300, interval=1, what="the service")
        upload_all(base, token, upload_payloads(args.data, args.scans))
        started = time.perf_counter()
        seconds = read_by_keyboard(base, args.scans)
        total = time.perf_counter() - started
    finally:
        stack.send_signal(signal.SIGINT)
        stack.wait(timeout=60)
    ordered = sorted(seconds)
    print(
        f"{args.scans} queued scans confirmed by keyboard in {total:.1f} s: "
        f"{60 * args.scans / total:.1f} reviews per minute; keystroke to next scan: median "
        f"{1000 * statistics.median(seconds):.0f} ms, 90th percentile "
        f"{1000 * ordered[int(0.9 * (len(ordered) - 1))]:.0f} ms"
    )


if __name__ == "__main__":
    main()
