from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from ml_core.preprocessing import PreprocessingConfig
from ml_core.recipes import PLACEHOLDER
from ml_core.shipped import load_shipped, shipped_description
from ml_core.study import StudyRule
from ml_core.training import TrainedClassifier, train_on_phantoms
from training.models import PLACEHOLDER_NOTE, SHIPPED_NOTE
from training.selectors import serving_model_version
from training.services import RegistrationFailed, model_version_bootstrap, model_version_ship


class Command(BaseCommand):
    help = (
        "Serve a first model version unless one serves already: the model shipped with the "
        "code (KIDNEY_SHIPPED_MODEL_DIR; loaded, not trained) or, where that folder holds "
        "none or with --placeholder, a placeholder trained on synthetic phantoms (about 20 s). "
        "Either is registered in MLflow."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--placeholder",
            action="store_true",
            help="Train and serve the phantom placeholder even where a shipped model exists.",
        )
        placeholder = parser.add_argument_group("the placeholder")
        placeholder.add_argument("--input-size", type=int, default=PLACEHOLDER.input_size)
        placeholder.add_argument("--samples", type=int, default=PLACEHOLDER.samples)
        placeholder.add_argument("--epochs", type=int, default=PLACEHOLDER.epochs)
        placeholder.add_argument("--seed", type=int, default=PLACEHOLDER.seed)
        parser.add_argument(
            "--force",
            action="store_true",
            help="Bootstrap even if a model already serves (logged as a change of serving "
            "version, like any other).",
        )

    def handle(self, *args, placeholder, force, **options):
        current = serving_model_version()
        if current and not force:
            self.stdout.write(f"Model {current.label} already serves; nothing to do.")
            return
        shipped = None if placeholder else shipped_description(settings.KIDNEY_SHIPPED_MODEL_DIR)
        try:
            log = self._serve_placeholder(**options) if shipped is None else self._serve_shipped()
        except RegistrationFailed as error:
            raise CommandError(str(error)) from None
        if getattr(log, "registry_warning", ""):
            self.stdout.write(self.style.WARNING(log.registry_warning))

    def _serve_shipped(self):
        folder = settings.KIDNEY_SHIPPED_MODEL_DIR
        self.stdout.write(f"Loading the shipped model from {folder}.")
        model, description = load_shipped(folder)
        report = description["report"]
        trained = TrainedClassifier(
            model,
            description["classes"],
            PreprocessingConfig.from_dict(description["preprocessing"]),
            description["threshold"],
            report["validation"],
            study_rule=StudyRule.from_dict(description.get("study", {}).get("rule")),
            study_threshold=description.get("study", {}).get("threshold"),
        )
        log = model_version_ship(trained=trained, report=report)
        if settings.KIDNEY_INT8_TWINS and "int8" in description:
            self._build_shipped_twin(log.to_version)
        held_out = report["held_out"]
        self.stdout.write(
            f"Model {log.to_version.label} serves: on the held-out block of later studies, "
            f"stone against normal, sensitivity {held_out['sensitivity']:.3f}, specificity "
            f"{held_out['specificity']:.3f}, ROC AUC {held_out['auc']:.3f} at threshold "
            f"{trained.threshold:.4g}."
        )
        self.stdout.write(self.style.WARNING(SHIPPED_NOTE))
        return log

    def _build_shipped_twin(self, model_version) -> None:
        """Rebuild the int8 twin that was calibrated and judged when the model was shipped
        (ml_core.int8: the same float weights and activation ranges give the same twin)."""
        from training.twins import int8_twin_build

        gate = int8_twin_build(model_version)
        check = gate["blocks"]["held_out"]["checks"]
        self.stdout.write(
            f"Int8 twin {'passed' if gate['passed'] else 'failed'} its gate on the held-out "
            f"block: ROC AUC {check['auc_change']['twin']:.4f} against "
            f"{check['auc_change']['float']:.4f}, {check['decisions_changed']['value']:.2%} of "
            "decisions changed."
        )

    def _serve_placeholder(self, *, input_size, samples, epochs, seed, **options):
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
        log = model_version_bootstrap(trained=trained, description=PLACEHOLDER_NOTE)
        report = trained.validation
        self.stdout.write(
            f"Model {log.to_version.label} serves: on synthetic validation phantoms "
            f"sensitivity {report['sensitivity']:.3f}, specificity {report['specificity']:.3f}, "
            f"ROC AUC {report['auc']:.3f} at threshold {report['threshold']:.3f}."
        )
        self.stdout.write(self.style.WARNING(PLACEHOLDER_NOTE))
        return log

    def _report_epoch(self, epochs: int):
        def report(epoch: int, logs: dict) -> None:
            if epoch == epochs or epoch % 10 == 0:
                self.stdout.write(f"  epoch {epoch}/{epochs}: loss {logs.get('loss', 0):.4f}")

        return report
