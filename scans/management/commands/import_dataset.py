import sys
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from ml_core.datasets import images_in_acquisition_order
from ml_core.errors import ImageDecodeError
from scans.services import scan_import

IMPORT_USER = "dataset-import"


class Command(BaseCommand):
    help = (
        "Import a folder of class-named subfolders (normal/, stone/, ...) as scans with "
        "confirmed labels, for training. Images already present (same bytes) are skipped."
    )

    def add_arguments(self, parser):
        parser.add_argument("folder")
        parser.add_argument(
            "--classes",
            default=",".join(settings.KIDNEY_CLASSES),
            help="Subfolders to import, comma-separated (default: %(default)s).",
        )
        parser.add_argument("--user", default=IMPORT_USER, help="Recorded as the labeller.")

    def handle(self, *args, folder, classes, user, **options):
        root = Path(folder)
        labels = [label.strip() for label in classes.split(",") if label.strip()]
        missing = [label for label in labels if not (root / label).is_dir()]
        if missing:
            raise CommandError(f"{root} has no subfolder for: {', '.join(missing)}")
        importer, _ = get_user_model().objects.get_or_create(username=user)
        files = [
            (label, path) for label in labels for path in images_in_acquisition_order(root / label)
        ]
        created = skipped = refused = 0
        for done, (label, path) in enumerate(files, start=1):
            try:
                _, was_created = scan_import(
                    data=path.read_bytes(),
                    label=label,
                    imported_by=importer,
                    source=f"import_dataset, class folder {label!r}",
                )
            except ImageDecodeError as error:
                refused += 1
                self.stderr.write(f"\n{path}: {error}")
                continue
            created += was_created
            skipped += not was_created
            _progress(done, len(files))
        sys.stderr.write("\n")
        self.stdout.write(
            f"Imported {created} labelled images, skipped {skipped} already present, "
            f"refused {refused} unreadable."
        )


def _progress(done: int, total: int, width: int = 40) -> None:
    filled = width * done // max(1, total)
    sys.stderr.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {done}/{total}")
    sys.stderr.flush()
