from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from ml_core.augmentation import NO_AUGMENTATION
from ml_core.datasets import folder_manifest
from ml_core.preprocessing import NORMALISATIONS
from ml_core.recipes import FROM_FOLDER as CPU_DEFAULTS
from ml_core.training import MODES, TRAINING_PRECISIONS, TrainingConfig
from retraining.services import training_run_outside_evaluation_set, training_run_request
from training.models import PromotionLog, TrainingRun
from training.runs import Progress, TrainingRunActive, training_run_execute
from training.selectors import current_evaluation_set, serving_model_version


class Command(BaseCommand):
    help = (
        "Train a candidate model version on a folder of class-named subfolders (--data) or on "
        "the confirmed labels (--from-labels), record it in MLflow and try the promotion gate."
    )

    def add_arguments(self, parser):
        source = parser.add_mutually_exclusive_group(required=True)
        source.add_argument("--data", help="Folder with one subfolder per class.")
        source.add_argument("--from-labels", action="store_true")
        parser.add_argument("--classes", default=",".join(settings.KIDNEY_CLASSES))
        parser.add_argument("--mode", choices=MODES, default=CPU_DEFAULTS.mode)
        parser.add_argument("--epochs", type=int, default=CPU_DEFAULTS.epochs)
        parser.add_argument("--input-size", type=int, default=CPU_DEFAULTS.input_size)
        parser.add_argument(
            "--base-weights",
            default=CPU_DEFAULTS.base_weights,
            help="imagenet, none, or a local weights file.",
        )
        parser.add_argument("--batch-size", type=int, default=CPU_DEFAULTS.batch_size)
        parser.add_argument("--learning-rate", type=float, default=CPU_DEFAULTS.learning_rate)
        parser.add_argument(
            "--learning-rate-schedule",
            choices=["constant", "cosine"],
            default=CPU_DEFAULTS.learning_rate_schedule,
        )
        parser.add_argument("--patience", type=int, default=CPU_DEFAULTS.patience)
        parser.add_argument(
            "--max-minutes",
            type=float,
            default=CPU_DEFAULTS.max_minutes,
            help="Stop after the epoch that passes this budget (0: none).",
        )
        parser.add_argument("--finetune-blocks", type=int, default=CPU_DEFAULTS.finetune_blocks)
        parser.add_argument(
            "--label-smoothing",
            type=float,
            default=CPU_DEFAULTS.label_smoothing,
            help="Train towards 1 - s/2 and s/2 instead of 1 and 0 (0: off).",
        )
        parser.add_argument(
            "--target-sensitivity",
            type=float,
            default=settings.KIDNEY_TARGET_SENSITIVITY,
            help="Sensitivity the threshold is chosen for on validation data (default "
            "KIDNEY_TARGET_SENSITIVITY); above the gate's floor it leaves a margin for new data.",
        )
        parser.add_argument(
            "--window",
            default=f"{CPU_DEFAULTS.window_width:g}/{CPU_DEFAULTS.window_level:g}",
            help="CT window WIDTH/LEVEL in Hounsfield units for DICOM input (default soft "
            "tissue, %(default)s); stored with the version.",
        )
        parser.add_argument(
            "--precision",
            choices=TRAINING_PRECISIONS,
            default=CPU_DEFAULTS.precision,
            help="What training computes in: bfloat16 (mixed, float32 weights) is about 2.8x "
            "faster on CPUs with native bfloat16 (docs/model-card.md); auto (the default) "
            "picks it there, float16 on a GPU, float32 elsewhere.",
        )
        parser.add_argument(
            "--normalisation",
            choices=NORMALISATIONS,
            default=CPU_DEFAULTS.normalisation or None,
            help="How intensities become network input (default: unit for a random base, "
            "vgg16 for ImageNet weights; standard: each image to mean 0, deviation 1).",
        )
        parser.add_argument("--no-augmentation", action="store_true")
        parser.add_argument(
            "--warm-start",
            action="store_true",
            help="Start from the serving version (its input size and preprocessing); with "
            "--mode head this retrains only its head, on cached features.",
        )
        parser.add_argument("--seed", type=int, default=CPU_DEFAULTS.seed)
        parser.add_argument(
            "--enqueue", action="store_true", help="Queue it for the training worker instead."
        )

    def handle(self, *args, **options):
        classes = tuple(label.strip() for label in options["classes"].split(",") if label.strip())
        try:
            window_width, window_level = _parse_window(options["window"])
            config = TrainingConfig(
                classes=classes,
                mode=options["mode"],
                epochs=options["epochs"],
                input_size=options["input_size"],
                base_weights=options["base_weights"],
                batch_size=options["batch_size"],
                learning_rate=options["learning_rate"],
                learning_rate_schedule=options["learning_rate_schedule"],
                patience=options["patience"],
                max_minutes=options["max_minutes"],
                finetune_blocks=options["finetune_blocks"],
                augmentation=NO_AUGMENTATION
                if options["no_augmentation"]
                else CPU_DEFAULTS.augmentation,
                target_sensitivity=options["target_sensitivity"],
                seed=options["seed"],
                window_width=window_width,
                window_level=window_level,
                precision=options["precision"],
                label_smoothing=options["label_smoothing"],
                normalisation=options["normalisation"] or "",
            )
            run = self._create_run(options, config)
        except (ValueError, FileNotFoundError) as error:
            raise CommandError(str(error)) from None
        except TrainingRunActive as active:
            raise CommandError(str(active)) from None
        if options["enqueue"]:
            self.stdout.write(f"Training run {run.pk} queued for the training worker.")
            return
        self.stdout.write(
            f"Training run {run.pk}: {run.manifest_size} images {run.class_counts}, "
            f"{config.mode} mode, {config.input_size} px, up to {config.epochs} epochs."
        )
        run = training_run_execute(run_id=run.pk, progress=self._progress())
        self._summarise(run)

    def _create_run(self, options, config: TrainingConfig) -> TrainingRun:
        parameters = config.to_dict()
        if options["warm_start"]:
            serving = serving_model_version()
            if serving is None:
                raise ValueError("--warm-start needs a serving model version.")
            parameters.update(
                input_size=serving.input_size,
                normalisation=serving.preprocessing_config.normalisation,
                window_width=serving.preprocessing_config.window_width,
                window_level=serving.preprocessing_config.window_level,
                classes=serving.classes,
                warm_start_from=serving.version,
            )
        enqueue = options["enqueue"]
        if options["from_labels"]:
            return training_run_request(
                parameters=parameters, trigger=TrainingRun.Trigger.COMMAND, enqueue=enqueue
            )
        # The last block of each class is never trained on: it is the evaluation set, frozen
        # now unless one is frozen already.
        return training_run_outside_evaluation_set(
            entries=folder_manifest(options["data"], list(config.classes)),
            parameters=parameters,
            source=f"folder {options['data']}",
            trigger=TrainingRun.Trigger.COMMAND,
            enqueue=enqueue,
        )

    def _progress(self) -> Progress:
        """Epoch lines always; in a terminal, a bar within each epoch too."""
        in_terminal = self.stdout.isatty()

        def on_epoch_end(epoch: int, row: dict) -> None:
            clear = "\r\033[K" if in_terminal else ""
            self.stdout.write(
                f"{clear}  epoch {epoch}: loss {row['loss']:.4f}, validation ROC AUC "
                f"{row['val_auc']:.4f}, {row['seconds']:.0f} s"
            )
            self.stdout.flush()

        def on_batch_end(epoch: int, batch: int, batches: int) -> None:
            filled = 30 * batch // max(1, batches)
            self.stdout.write(
                f"\r  epoch {epoch}: [{'#' * filled}{'.' * (30 - filled)}] {batch}/{batches}",
                ending="",
            )
            self.stdout.flush()

        return Progress(on_epoch_end, on_batch_end if in_terminal else None)

    def _summarise(self, run: TrainingRun) -> None:
        if run.status != TrainingRun.Status.SUCCEEDED:
            raise CommandError(f"Training run {run.pk} failed: {run.error}")
        candidate = run.model_version
        seconds = (run.finished - run.started).total_seconds()
        self.stdout.write(
            f"Candidate {candidate.label} in {seconds:.1f} s (MLflow run {run.mlflow_run_id})."
        )
        for name in ("validation", "evaluation"):
            report = run.metrics.get(name)
            if report:
                self.stdout.write(f"  {name}: {_describe(report)}")
        evaluation_set = current_evaluation_set()
        if evaluation_set is not None:
            self.stdout.write(
                f"  (evaluation set v{evaluation_set.version}: {evaluation_set.source})"
            )
        log = PromotionLog.objects.filter(to_version=candidate).first()
        if log is not None:
            self.stdout.write(f"Promotion gate: {log.decision}. {log.gate_summary()}")
        serving = serving_model_version()
        if serving is not None:
            self.stdout.write(f"Serving: {serving.label}.")


def _parse_window(text: str) -> tuple[float, float]:
    try:
        width, level = (float(part) for part in text.split("/"))
    except ValueError:
        raise ValueError(f"--window must be WIDTH/LEVEL, e.g. 400/40 (got {text!r}).") from None
    return width, level


def _describe(report: dict) -> str:
    return (
        f"sensitivity {report['sensitivity']:.3f}, specificity {report['specificity']:.3f}, "
        f"ROC AUC {report['auc']:.3f} at threshold {report['threshold']:.4f}, n {report['n']}"
    )
