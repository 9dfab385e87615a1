import json
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from ml_core.datasets import IMAGE_SUFFIXES, LabelledImage
from ml_core.shipped import shipped_description
from training.models import SHIPPED_MODEL_CARD, ModelVersion
from training.selectors import serving_model_version
from training.twins import TwinUnavailable, int8_twin_build


class Command(BaseCommand):
    help = (
        "Build (or rebuild) a model version's int8 twin and judge it against the version's "
        "float model: calibrated on the version's training images, or on --calibration-images; "
        "the shipped model's is rebuilt from the activation ranges shipped with it. The last "
        "line is the gate as one JSON object."
    )

    def add_arguments(self, parser):
        parser.add_argument("--model", type=int, help="Model version (default: the serving one).")
        parser.add_argument(
            "--calibration-images",
            help="A folder of images (searched through its subfolders) to calibrate on instead "
            "of the version's own training images: never the images it is judged on.",
        )

    def handle(self, *args, model, calibration_images, **options):
        model_version = (
            ModelVersion.objects.filter(version=model).first() if model else serving_model_version()
        )
        if model_version is None:
            raise CommandError(f"No model version {model}." if model else "No model serves.")
        build = {}
        if calibration_images:
            build["calibration"] = _images_in(Path(calibration_images))
        elif model_version.model_card == SHIPPED_MODEL_CARD:
            shipped = shipped_description(settings.KIDNEY_SHIPPED_MODEL_DIR) or {}
            recorded = shipped.get("int8")
            # Ranges recorded for the same model: the folder may hold a newer shipped model.
            if recorded and shipped["threshold"] == model_version.threshold:
                build["ranges"] = recorded["ranges"]
                build["recorded_blocks"] = {"held_out": recorded["held_out"]}
        try:
            gate = int8_twin_build(model_version, **build)
        except TwinUnavailable as error:
            raise CommandError(str(error)) from None
        verdict = "passed its gate" if gate["passed"] else "failed its gate: Keras serves"
        self.stdout.write(f"The int8 twin of {model_version.label} {verdict}.")
        self.stdout.write(json.dumps(gate))


def _images_in(folder: Path) -> list[LabelledImage]:
    if not folder.is_dir():
        raise CommandError(f"No folder {folder}.")
    paths = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if not paths:
        raise CommandError(f"No images ({', '.join(sorted(IMAGE_SUFFIXES))}) in {folder}.")
    # The label is not used: calibration only looks at the images.
    return [
        LabelledImage(path=str(path), label="", order=index) for index, path in enumerate(paths)
    ]
