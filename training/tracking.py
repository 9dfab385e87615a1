"""MLflow: one run per training run, the registered model `kidney-ct-classifier`, and the
aliases `champion` (serving) and `challenger` (newest candidate).

MLflow is imported only here, lazily, so the web process never pays for it.
"""

import json
import os
import tempfile
from pathlib import Path

from django.conf import settings

REGISTERED_MODEL = "kidney-ct-classifier"
CHAMPION = "champion"
CHALLENGER = "challenger"


def _mlflow():
    # No usage reports leave a hospital network; a server that does not answer is given up on
    # within the configured retries and timeout (MLflow reads these from the environment).
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] = settings.MLFLOW_HTTP_REQUEST_MAX_RETRIES
    os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] = settings.MLFLOW_HTTP_REQUEST_TIMEOUT
    import mlflow

    mlflow.set_tracking_uri(settings.MLFLOW_TRACKING_URI)
    mlflow.set_registry_uri(settings.MLFLOW_REGISTRY_URI)
    return mlflow


def _experiment_id(mlflow) -> str:
    experiment = mlflow.get_experiment_by_name(settings.MLFLOW_EXPERIMENT_NAME)
    if experiment is not None:
        return experiment.experiment_id
    return mlflow.create_experiment(
        settings.MLFLOW_EXPERIMENT_NAME, artifact_location=settings.MLFLOW_ARTIFACT_LOCATION
    )


class TrainingTracker:
    """Records one training run in MLflow: `with TrainingTracker(name) as tracker: ...`."""

    def __init__(self, run_name: str):
        self.run_name = run_name
        self.mlflow = _mlflow()
        self.run = None

    def __enter__(self) -> "TrainingTracker":
        self.run = self.mlflow.start_run(
            experiment_id=_experiment_id(self.mlflow), run_name=self.run_name
        )
        return self

    def __exit__(self, error_type, error, traceback) -> None:
        self.mlflow.end_run(status="FAILED" if error_type else "FINISHED")

    @property
    def run_id(self) -> str:
        return self.run.info.run_id

    def log_parameters(self, parameters: dict) -> None:
        self.mlflow.log_params({key: _text(value) for key, value in parameters.items()})

    def log_epoch(self, epoch: int, values: dict) -> None:
        numbers = {k: float(v) for k, v in values.items() if isinstance(v, int | float)}
        numbers.pop("epoch", None)
        self.mlflow.log_metrics(numbers, step=epoch)

    def log_metrics(self, values: dict[str, float]) -> None:
        self.mlflow.log_metrics({key: float(value) for key, value in values.items()})

    def log_report(self, prefix: str, report: dict) -> None:
        """Scalar metrics under `prefix_`, the whole report as JSON, and its plots."""
        scalars = {
            f"{prefix}_{key}": float(report[key])
            for key in ("sensitivity", "specificity", "auc", "threshold")
            if report.get(key) is not None
        }
        self.mlflow.log_metrics(scalars)
        self.mlflow.log_dict(report, f"reports/{prefix}.json")

    def log_figure_png(self, name: str, png: bytes) -> None:
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / name
            path.write_bytes(png)
            self.mlflow.log_artifact(str(path), artifact_path="plots")

    def register_model(self, model_path: Path, description: str) -> str:
        """Log the saved model, register it as a new version, alias it `challenger`; return
        the registry's version. A failure leaves no registered version behind."""
        self.mlflow.log_artifact(str(model_path), artifact_path="model")
        client = self.mlflow.MlflowClient()
        try:
            client.get_registered_model(REGISTERED_MODEL)
        except self.mlflow.exceptions.MlflowException:
            client.create_registered_model(REGISTERED_MODEL)
        registered = client.create_model_version(
            REGISTERED_MODEL,
            source=self.mlflow.get_artifact_uri("model"),
            run_id=self.run_id,
            description=description,
        )
        try:
            client.set_registered_model_alias(REGISTERED_MODEL, CHALLENGER, registered.version)
        except Exception:
            delete_model_version(str(registered.version))
            raise
        return str(registered.version)


def log_int8_twin(run_id: str, xml_path: Path, gate: dict) -> None:
    """Add a version's int8 twin (its IR pair) and its gate to the version's MLflow run."""
    mlflow = _mlflow()
    client = mlflow.MlflowClient()
    for suffix in (".xml", ".bin"):
        client.log_artifact(run_id, str(xml_path.with_suffix(suffix)), artifact_path="int8")
    client.log_dict(run_id, gate, "int8/gate.json")
    client.log_metric(run_id, "int8_gate_passed", float(bool(gate.get("passed"))))
    for block, result in gate.get("blocks", {}).items():
        for name, check in result.get("checks", {}).items():
            if "twin" in check:
                client.log_metric(run_id, f"int8_{block}_{name}_twin", float(check["twin"]))
            if "value" in check:
                client.log_metric(run_id, f"int8_{block}_{name}", float(check["value"]))


def delete_model_version(mlflow_version: str) -> None:
    """Undo a registration whose version could not be recorded in the database."""
    _mlflow().MlflowClient().delete_model_version(REGISTERED_MODEL, mlflow_version)


def champion_version() -> str | None:
    """The registry version the `champion` alias points at, if any."""
    mlflow = _mlflow()
    try:
        found = mlflow.MlflowClient().get_model_version_by_alias(REGISTERED_MODEL, CHAMPION)
    except mlflow.exceptions.MlflowException as error:
        # No such alias (or model yet): stores word it one way or the other.
        if error.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
            return None
        raise
    return str(found.version)


def set_champion(mlflow_version: str) -> None:
    """Point the `champion` alias at the version that now serves."""
    mlflow = _mlflow()
    mlflow.MlflowClient().set_registered_model_alias(REGISTERED_MODEL, CHAMPION, mlflow_version)


def _text(value) -> str:
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
    return text[:500]
