"""bench/replay.py end to end on tiny synthetic images: the real stack (gunicorn, inference
and training workers, beat, Redis, PostgreSQL), a short stream, beat's retraining and the
gate's decisions."""

import json
import os
import subprocess
import sys

from django.conf import settings

from tests.conftest import REPO_ROOT, TEST_DATA_DIR
from tests.images import write_phantom_folder


def drop_databases(url: str) -> None:
    """The replay's base and its clone, which it leaves for a look."""
    import psycopg

    name = url.rsplit("/", 1)[1]
    with psycopg.connect(url.rsplit("/", 1)[0] + "/postgres", autocommit=True) as connection:
        for database in (name, f"{name}_retraining"):
            connection.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')


# Blocks small enough for a stream of phantoms to fill.
SMALL_BLOCKS = {"KIDNEY_SPLIT_GAP": "1", "KIDNEY_RECENT_EVALUATION_MIN_PER_CLASS": "2"}


def replay_database_url(name: str, request) -> str:
    database = settings.DATABASES["default"]
    url = (
        f"postgres://{database['USER']}@{database['HOST']}:{database['PORT'] or 5432}/"
        f"kidney_replay_{name}_{os.getpid()}"
    )
    request.addfinalizer(lambda: drop_databases(url))
    return url


def run_replay(*arguments: str) -> dict:
    result = subprocess.run(
        [sys.executable, "bench/replay.py", *arguments],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=900, check=False,
        env={**os.environ, **SMALL_BLOCKS},
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_a_replay_from_a_fresh_install_reports_per_chunk_and_gives_the_same_result_twice(
    tmp_path, request
):
    """--initial-shipped starts from what bootstrap_model serves; beat retrains as labels
    come; runs start at the same label counts whatever the machine's load, so the same stream
    gives the same replay."""
    write_phantom_folder(tmp_path / "stream", per_class=15, size=48, seed=3)
    # Names with spaces and parentheses (the phantoms'), and a file that is no image.
    (tmp_path / "stream" / "stone" / "Stone- (7) notes.png").write_text("not an image")
    arguments = [
        "--initial-shipped", "--stream", str(tmp_path / "stream"), "--chunk", "10",
        "--retrain-every", "8", "--database-url", replay_database_url("shipped", request),
    ]  # fmt: skip
    work = TEST_DATA_DIR / "replay-shipped-1"

    first = run_replay(*arguments, "--work", str(work))
    second = run_replay(*arguments, "--work", str(TEST_DATA_DIR / "replay-shipped-2"))

    assert set(first) == {"retraining"}
    replay = first["retraining"]
    assert replay["chunks"][0]["versions"] == [1]  # the shipped model served the first chunk
    assert sum(chunk["n"] for chunk in replay["chunks"]) == 30
    assert all(chunk["reviewed"] == chunk["n"] for chunk in replay["chunks"])
    assert replay["overall"]["n"] == 30  # the file that is no image was refused, not scored
    assert replay["last_quarter"]["n"] == 7  # the last 30 // 4
    assert set(replay["overall"]) == {
        "n", "auc", "sensitivity", "specificity", "specificity_at_sensitivity_95",
    }  # fmt: skip
    assert replay["chunk_auc"]["chunks"] >= 2
    assert replay["chunk_auc"]["low"] <= replay["chunk_auc"]["mean"] <= replay["chunk_auc"]["high"]
    assert replay["training_runs"] >= 1  # beat, once the labels fill a run's blocks
    assert replay["failed_training_runs"] == 0  # a run starts only once it can train
    assert (work / "learning-curve.png").stat().st_size > 0
    assert (work / "learning-curve.svg").read_text().lstrip().startswith("<?xml")
    predictions = json.loads((work / "predictions.json").read_text())["retraining"]
    assert len(predictions) == 30
    assert {"label", "abnormal_score", "decided_abnormal", "model_version"} == set(predictions[0])
    assert second == first
