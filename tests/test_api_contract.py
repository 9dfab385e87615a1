"""The API keeps its own contract: Schemathesis, with every check and all its phases (examples,
coverage, fuzzing, stateful), against the live server and a real worker, as each role. It runs
from the repository root, so schemathesis.toml gives uploads real slices. A fixed seed keeps a
failure reproducible; the README says how to run it with others."""

import re
import subprocess
import sys

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


@pytest.mark.timeout(600)
@pytest.mark.parametrize("role", [Role.CLINICIAN, Role.RADIOLOGIST, Role.ML_ENGINEER])
def test_every_answer_keeps_the_schema_s_contract(live_server, role):
    _, token = api_user_upsert(username=f"contract-{role}", role=role)
    command = [
        sys.executable, "-m", "schemathesis.cli", "run", f"{live_server.url}/api/schema/",
        "--header", f"Authorization: Token {token}", "--checks", "all",
        "--max-examples", str(EXAMPLES), "--seed", str(SEED),
        "--generation-database", "none", "--no-color",
    ]  # fmt: skip
    result = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=540)

    report = result.stdout + result.stderr
    assert result.returncode == 0, report[-6000:]
    selected, tested = re.search(r"Selected: (\d+)/\d+\s+Tested: (\d+)", report).groups()
    assert int(tested) == int(selected) >= 25, report[-3000:]
