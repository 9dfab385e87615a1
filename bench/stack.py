"""What the benchmarks share: management commands run as a user runs them, against a data
folder of their own on the embedded default unless a database and broker are given."""

import os
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


def isolated_environment(data_dir: str, **overrides: str) -> dict:
    """This process's environment with its own data folder and no inherited services."""
    environment = {
        key: value
        for key, value in os.environ.items()
        if key not in ("DATABASE_URL", "CELERY_BROKER_URL")
    }
    environment.update(KIDNEY_DATA_DIR=data_dir, TF_CPP_MIN_LOG_LEVEL="2", **overrides)
    return environment


def manage(environment: dict, *arguments: str) -> str:
    """Run `manage.py ARGUMENTS`; stop the benchmark with its error output if it fails."""
    result = subprocess.run(
        [sys.executable, "manage.py", *arguments],
        cwd=REPO_ROOT,
        env=environment,
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise SystemExit(f"manage.py {' '.join(arguments)} failed:\n{result.stderr[-3000:]}")
    return result.stdout
