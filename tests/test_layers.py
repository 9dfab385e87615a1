"""Imports point one way, down: gateway and retraining -> scans, training -> ml_core; nothing
imports the gateway. Task modules
import services; nothing else imports a task module (messages go through dispatch)."""

import ast
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT

FORBIDDEN = {
    "ml_core": {
        "django",
        "rest_framework",
        "celery",
        "accounts",
        "scans",
        "training",
        "retraining",
        "audit",
        "gateway",
    },
    "training": {"scans", "retraining", "gateway"},
    "scans": {"retraining", "gateway"},
    "retraining": {"gateway"},
    "accounts": {"scans", "training", "retraining", "audit", "gateway"},
    "audit": {"scans", "training", "retraining", "gateway"},
}


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def sources(package: str) -> list[Path]:
    return sorted((REPO_ROOT / package).rglob("*.py"))


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_a_layer_never_imports_the_layers_above_it(package):
    offending = {
        f"{path.relative_to(REPO_ROOT)} imports {name}"
        for path in sources(package)
        for name in imported_modules(path)
        if name.split(".")[0] in FORBIDDEN[package]
    }
    assert not offending


def test_only_celery_imports_task_modules():
    offending = {
        f"{path.relative_to(REPO_ROOT)} imports {name}"
        for package in (
            "scans",
            "training",
            "retraining",
            "accounts",
            "audit",
            "gateway",
            "kidneyproject",
        )
        for path in sources(package)
        for name in imported_modules(path)
        if "tasks" in name.split(".")[1:]
    }
    assert not offending


def test_the_check_sees_a_forbidden_import(tmp_path):
    module = tmp_path / "module.py"
    module.write_text("from retraining.services import training_run_request\nimport scans.tasks\n")
    assert imported_modules(module) >= {"retraining.services", "scans.tasks"}
