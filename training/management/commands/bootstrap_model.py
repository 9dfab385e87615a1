from django.conf import settings
from django.core.management.base import BaseCommand

from ml_core.training import train_on_phantoms
from training.selectors import serving_model_version
from training.services import model_version_register

PLACEHOLDER_NOTE = (
    "Placeholder trained on synthetic phantoms, not on patient images. It is not a medical "
    "model: train on real, confirmed CT labels before anyone relies on it."
)


class Command(BaseCommand):
    help = (
        "Train a placeholder model on synthetic phantoms (no data, no network, about 20 s) "
        "and serve it, unless a model already serves."
    )

    def add_arguments(self, parser):
        parser.add_argument("--input-size", type=int, default=64)
        parser.add_argument("--samples", type=int, default=1000)
        parser.add_argument("--epochs", type=int, default=40)
        parser.add_argument("--seed", type=int, default=0)
        parser.add_argument(
            "--force", action="store_true", help="Bootstrap even if a model already serves."
        )

    def handle(self, *args, input_size, samples, epochs, seed, force, **options):
        current = serving_model_version()
        if current and not force:
            self.stdout.write(f"Model v{current.version} already serves; nothing to do.")
            return
        self.stdout.write(
            f"Training a placeholder on {samples} phantoms at {input_size} px, {epochs} epochs."
        )
        trained = train_on_phantoms(
            input_size=input_size,
            samples=samples,
            epochs=epochs,
            seed=seed,
            target_sensitivity=settings.KIDNEY_TARGET_SENSITIVITY,
            on_epoch_end=self._report_epoch(epochs),
        )
        model_version = model_version_register(
            trained=trained, description=PLACEHOLDER_NOTE, serve=True
        )
        report = trained.validation
        self.stdout.write(
            f"Model v{model_version.version} serves: on synthetic validation phantoms "
            f"sensitivity {report['sensitivity']:.3f}, specificity {report['specificity']:.3f}, "
            f"ROC AUC {report['auc']:.3f} at threshold {report['threshold']:.3f}."
        )
        self.stdout.write(self.style.WARNING(PLACEHOLDER_NOTE))

    def _report_epoch(self, epochs: int):
        def report(epoch: int, logs: dict) -> None:
            if epoch == epochs or epoch % 10 == 0:
                self.stdout.write(f"  epoch {epoch}/{epochs}: loss {logs.get('loss', 0):.4f}")

        return report
