import json

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from ml_core.augmentation import NO_AUGMENTATION, Augmentation
from ml_core.datasets import block_split, folder_manifest
from ml_core.training import MODES, TrainingConfig
from scans.training_data import training_run_request
from training.models import PromotionLog, TrainingRun
from training.selectors import (
    current_evaluation_set,
    evaluation_set_entries,
    serving_model_version,
)
from training.services import (
    TrainingRunActive,
    evaluation_set_freeze,
    training_run_create,
    training_run_execute,
)

# The best configuration found for a 2-core CPU without ImageNet weights (docs/benchmarks.md).
CPU_DEFAULTS = TrainingConfig(
    input_size=96,
    epochs=15,
    max_minutes=26.0,
    learning_rate_schedule="cosine",
    augmentation=Augmentation(contrast=0.2, brightness=0.05),
)


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
        run = training_run_execute(run_id=run.pk, progress=self._print_epoch)
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
        entries = folder_manifest(options["data"], list(config.classes))
        # The last block of each class is never trained on: it is the evaluation set, frozen
        # now unless one is frozen already.
        kept, held_out = block_split(
            entries, fraction=settings.KIDNEY_EVALUATION_FRACTION, gap=settings.KIDNEY_SPLIT_GAP
        )
        evaluation_set = evaluation_set_freeze(entries=held_out, source=f"folder {options['data']}")
        evaluation_hashes = {entry.sha256 for entry in evaluation_set_entries(evaluation_set)}
        return training_run_create(
            entries=[entry for entry in kept if entry.sha256 not in evaluation_hashes],
            parameters=parameters,
            data_source=f"folder {options['data']}",
            trigger=TrainingRun.Trigger.COMMAND,
            enqueue=enqueue,
        )

    def _print_epoch(self, epoch: int, row: dict) -> None:
        self.stdout.write(
            f"  epoch {epoch}: loss {row['loss']:.4f}, validation ROC AUC {row['val_auc']:.4f}, "
            f"{row['seconds']:.0f} s"
        )
        self.stdout.flush()

    def _summarise(self, run: TrainingRun) -> None:
        if run.status != TrainingRun.Status.SUCCEEDED:
            raise CommandError(f"Training run {run.pk} failed: {run.error}")
        candidate = run.model_version
        seconds = (run.finished - run.started).total_seconds()
        self.stdout.write(
            f"Candidate v{candidate.version} in {seconds:.1f} s (MLflow run {run.mlflow_run_id})."
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
            self.stdout.write(f"Promotion gate: {log.decision}. {json.dumps(log.gate['checks'])}")


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
