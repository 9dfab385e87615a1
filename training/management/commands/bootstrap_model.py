from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from ml_core.recipes import PLACEHOLDER
from ml_core.training import train_on_phantoms
from training.models import PLACEHOLDER_NOTE
from training.selectors import serving_model_version
from training.services import RegistrationFailed, model_version_bootstrap


class Command(BaseCommand):
    help = (
        "Train a placeholder model on synthetic phantoms (no data, no network, about 20 s), "
        "register it in MLflow and serve it, unless a model already serves."
    )

    def add_arguments(self, parser):
        parser.add_argument("--input-size", type=int, default=PLACEHOLDER.input_size)
        parser.add_argument("--samples", type=int, default=PLACEHOLDER.samples)
        parser.add_argument("--epochs", type=int, default=PLACEHOLDER.epochs)
        parser.add_argument("--seed", type=int, default=PLACEHOLDER.seed)
        parser.add_argument(
            "--force",
            action="store_true",
            help="Bootstrap even if a model already serves (logged as a change of serving "
            "version, like any other).",
        )

    def handle(self, *args, input_size, samples, epochs, seed, force, **options):
        current = serving_model_version()
        if current and not force:
            self.stdout.write(f"Model {current.label} already serves; nothing to do.")
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
        try:
            log = model_version_bootstrap(trained=trained, description=PLACEHOLDER_NOTE)
        except RegistrationFailed as error:
            raise CommandError(str(error)) from None
        report = trained.validation
        self.stdout.write(
            f"Model {log.to_version.label} serves: on synthetic validation phantoms "
            f"sensitivity {report['sensitivity']:.3f}, specificity {report['specificity']:.3f}, "
            f"ROC AUC {report['auc']:.3f} at threshold {report['threshold']:.3f}."
        )
        if log.registry_warning:
            self.stdout.write(self.style.WARNING(log.registry_warning))
        self.stdout.write(self.style.WARNING(PLACEHOLDER_NOTE))

    def _report_epoch(self, epochs: int):
        def report(epoch: int, logs: dict) -> None:
            if epoch == epochs or epoch % 10 == 0:
                self.stdout.write(f"  epoch {epoch}/{epochs}: loss {logs.get('loss', 0):.4f}")

        return report
