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

TINY_INITIAL = (
    "--mode head --epochs 2 --input-size 32 --batch-size 16 --learning-rate 0.001 --no-augmentation"
)


def drop_databases(url: str) -> None:
    """The replay's base and its clone, which it leaves for a look."""
    import psycopg

    name = url.rsplit("/", 1)[1]
    with psycopg.connect(url.rsplit("/", 1)[0] + "/postgres", autocommit=True) as connection:
        for database in (name, f"{name}_retraining"):
            connection.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')


def test_a_replay_streams_chunks_retrains_through_beat_and_reports_per_chunk(tmp_path, request):
    write_phantom_folder(tmp_path / "initial", per_class=30, size=48, seed=1)
    write_phantom_folder(tmp_path / "stream", per_class=20, size=48, seed=2)
    # Names with spaces and parentheses (the phantoms'), and a file that is no image.
    (tmp_path / "stream" / "stone" / "Stone- (7) notes.png").write_text("not an image")
    database = settings.DATABASES["default"]
    url = (
        f"postgres://{database['USER']}@{database['HOST']}:{database['PORT'] or 5432}/"
        f"kidney_replay_test_{os.getpid()}"
    )
    work = TEST_DATA_DIR / "replay"
    request.addfinalizer(lambda: drop_databases(url))

    result = subprocess.run(
        [
            sys.executable, "bench/replay.py", "--initial", str(tmp_path / "initial"),
            "--stream", str(tmp_path / "stream"), "--chunk", "10", "--retrain-every", "10",
            "--initial-args", TINY_INITIAL, "--work", str(work), "--database-url", url,
        ],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=900, check=False,
    )  # fmt: skip

    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    outcome = json.loads(result.stdout.strip().splitlines()[-1])
    assert set(outcome) == {"retraining"}
    replay = outcome["retraining"]
    assert sum(chunk["n"] for chunk in replay["chunks"]) == 40
    assert all(chunk["reviewed"] == chunk["n"] for chunk in replay["chunks"])
    assert replay["overall"]["n"] == 40  # the file that is no image was refused, not scored
    assert replay["last_quarter"]["n"] == 10
    assert set(replay["overall"]) == {
        "n", "auc", "sensitivity", "specificity", "specificity_at_sensitivity_95",
    }  # fmt: skip
    assert replay["chunk_auc"]["chunks"] >= 2
    assert replay["chunk_auc"]["low"] <= replay["chunk_auc"]["mean"] <= replay["chunk_auc"]["high"]
    assert replay["training_runs"] >= 3  # beat, every 10 new labels
    # A first run on 10 labels has too few to split off validation and fails saying so; the
    # gate decides each of the others.
    assert replay["failed_training_runs"] <= 1
    decided = replay["training_runs"] - replay["failed_training_runs"]
    assert replay["promotions"] + replay["rejections"] == decided >= 2
    assert (work / "learning-curve.png").stat().st_size > 0
    assert (work / "learning-curve.svg").read_text().lstrip().startswith("<?xml")
    predictions = json.loads((work / "predictions.json").read_text())["retraining"]
    assert len(predictions) == 40
    assert {"label", "abnormal_score", "decided_abnormal", "model_version"} == set(predictions[0])
