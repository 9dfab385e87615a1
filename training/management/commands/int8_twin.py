import json
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from ml_core.datasets import IMAGE_SUFFIXES, LabelledImage
from training.models import ModelVersion
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
        calibration = _images_in(Path(calibration_images)) if calibration_images else None
        try:
            gate = int8_twin_build(model_version, calibration=calibration)
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
