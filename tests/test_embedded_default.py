"""The embedded default, as `make run` starts it: SQLite, Celery's filesystem transport and
local media in one data folder, web + workers + beat under `manage.py runstack`."""

import json
import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request
import uuid

import pytest

from tests.conftest import REPO_ROOT, wait_for
from tests.images import phantom_png
from tests.processes import free_port


def manage(*arguments, environment) -> str:
    result = subprocess.run(
        [sys.executable, "manage.py", *arguments],
        cwd=REPO_ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def multipart_upload(url: str, token: str, data: bytes) -> dict:
    boundary = uuid.uuid4().hex
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="s.png"\r\n'
            f"Content-Type: application/octet-stream\r\n\r\n"
        ).encode()
        + data
        + f"\r\n--{boundary}--\r\n".encode()
    )
    request = urllib.request.Request(
        url,
        data=body,
        headers={
            "Authorization": f"Token {token}",
            "Content-Type": f"multipart/form-data; boundary={boundary}",
        },
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        assert response.status == 202
        return json.load(response)


def get_json(url: str, token: str) -> dict:
    request = urllib.request.Request(url, headers={"Authorization": f"Token {token}"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.load(response)


def test_runstack_serves_uploads_end_to_end_without_any_server(tmp_path):
    environment = {
        key: value
        for key, value in os.environ.items()
        if key not in ("DATABASE_URL", "CELERY_BROKER_URL", "KIDNEY_STORAGE_BACKEND")
    }
    environment["KIDNEY_DATA_DIR"] = str(tmp_path / "data")
    manage("migrate", "--noinput", environment=environment)
    manage(
        "bootstrap_model",
        "--placeholder",
        "--input-size",
        "32",
        "--samples",
        "64",
        "--epochs",
        "2",
        environment=environment,
    )
    token = manage("create_api_user", "demo", "--role", "clinician", environment=environment)
    token = token.strip().splitlines()[-1]
    port = free_port()
    stack = subprocess.Popen(
        [sys.executable, "manage.py", "runstack", "--port", str(port)],
        cwd=REPO_ROOT,
        env=environment,
        stdout=subprocess.DEVNULL,
        stderr=open(tmp_path / "stack.log", "wb"),  # noqa: SIM115 - closed with the process
    )
    try:
        base = f"http://127.0.0.1:{port}"

        def web_is_up():
            try:
                return get_json(f"{base}/api/models/", token)
            except OSError:
                return None

        models = wait_for(web_is_up, timeout=60, interval=0.5, message="the web server")
        assert models["results"][0]["status"] == "serving"
        accepted = multipart_upload(f"{base}/api/scans/", token, phantom_png(size=64))

        def predicted():
            body = get_json(accepted["url"], token)
            return body if body["status"] == "predicted" else None

        body = wait_for(predicted, timeout=90, interval=0.5, message="the prediction")
        assert set(body["prediction"]["probabilities"]) == {"normal", "stone"}
        # A request line longer than gunicorn's default 4 KB still gets the API's JSON.
        long_query = urllib.request.Request(f"{base}/api/scans/?page={'x' * 6000}")
        long_query.add_header("Authorization", f"Token {token}")
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(long_query, timeout=10)
        assert refused.value.code == 400
        assert list(json.loads(refused.value.read())["fields"]) == ["page"]
        assert (tmp_path / "data" / "kidney.sqlite3").is_file()
        # Local media, and the model in storage under the data folder too.
        assert any((tmp_path / "data" / "media" / "scans").iterdir())
        assert any((tmp_path / "data" / "media" / "models").iterdir())
    finally:
        stack.send_signal(signal.SIGINT)
        try:
            stack.wait(timeout=60)
        except subprocess.TimeoutExpired:
            stack.kill()
            raise
    assert stack.returncode == 0, (tmp_path / "stack.log").read_text()[-3000:]

    def nothing_left() -> bool:
        found = subprocess.run(
            ["pgrep", "-f", f"--bind=127.0.0.1:{port}"], capture_output=True, check=False
        )
        return found.stdout == b""

    wait_for(nothing_left, timeout=10, message="Ctrl-C to stop web and workers too")
