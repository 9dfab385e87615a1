"""The API keeps its own contract: Schemathesis, with every check and all its phases (examples,
coverage, fuzzing, stateful), against the live server and a real worker, as each role. It runs
from the repository root, so schemathesis.toml gives uploads real slices. A fixed seed keeps a
failure reproducible; the README says how to run it with others."""

import re
import subprocess
import sys
import urllib.request

import pytest

from accounts.roles import Role
from accounts.services import api_user_upsert
from tests.conftest import REPO_ROOT

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("celery_worker_process", "serving_model"),
]
SEED = 20261205
EXAMPLES = 8


ROLES = (Role.CLINICIAN, Role.RADIOLOGIST, Role.ML_ENGINEER)


@pytest.mark.timeout(600)
def test_every_answer_keeps_the_schema_s_contract_for_every_role(live_server, tmp_path):
    # The three roles at once, as a hospital's users are: a run waits on the server most of
    # the time, so together they take little longer than one. They read the schema from one
    # copy: drf-spectacular's generator is not thread-safe, and the live server is threaded
    # (gunicorn's workers are processes).
    schema = tmp_path / "schema.yaml"
    with urllib.request.urlopen(f"{live_server.url}/api/schema/", timeout=60) as response:
        schema.write_bytes(response.read())
    runs = {}
    for role in ROLES:
        _, token = api_user_upsert(username=f"contract-{role}", role=role)
        command = [
            sys.executable, "-m", "schemathesis.cli", "run", str(schema),
            "--url", live_server.url,
            "--header", f"Authorization: Token {token}", "--checks", "all",
            "--max-examples", str(EXAMPLES), "--seed", str(SEED),
            "--generation-database", "none", "--no-color",
        ]  # fmt: skip
        runs[role] = subprocess.Popen(
            command, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
    reports = {role: run.communicate(timeout=540)[0] for role, run in runs.items()}

    for role, run in runs.items():
        report = reports[role]
        assert run.returncode == 0, f"{role}:\n{report[-6000:]}"
        selected, tested = re.search(r"Selected: (\d+)/\d+\s+Tested: (\d+)", report).groups()
        assert int(tested) == int(selected) >= 25, f"{role}:\n{report[-3000:]}"
