import json

from django.core.management.base import BaseCommand, CommandError

from ml_core.datasets import folder_manifest
from training.files import local_entries, model_load
from training.models import ModelVersion
from training.selectors import serving_model_version


class Command(BaseCommand):
    help = (
        "Evaluate a model version on a folder of class-named subfolders at the version's "
        "stored threshold; the last line is one JSON object."
    )

    def add_arguments(self, parser):
        parser.add_argument("--data", required=True, help="Folder with one subfolder per class.")
        parser.add_argument("--model", type=int, help="Model version (default: the serving one).")

    def handle(self, *args, data, model, **options):
        from ml_core.training import evaluate

        model_version = (
            ModelVersion.objects.filter(version=model).first() if model else serving_model_version()
        )
        if model_version is None:
            raise CommandError(f"No model version {model}." if model else "No model serves.")
        try:
            entries = folder_manifest(data, model_version.classes)
        except FileNotFoundError as error:
            raise CommandError(str(error)) from None
        report = evaluate(
            model_load(model_version.artifact),
            local_entries(entries),
            model_version.classes,
            model_version.preprocessing_config,
            model_version.threshold,
        )
        self.stdout.write(
            json.dumps(
                {
                    **report,
                    "model_version": model_version.version,
                    "mlflow_version": model_version.mlflow_version,
                }
            )
        )
