"""Train a base model on the development set and score it, stone against normal, on the block
of later studies it never saw: the measure behind the shipped model (docs/model-card.md).

The split, per class by file number (acquisition order): the last --held-out fraction is held
out (after a gap of --gap slices), the last --validation fraction of the rest is the
validation block (early stopping and the threshold, after --validation-gap slices), the
remainder trains. Training classes may include cyst and tumor; the held-out report is always
stone against normal at the threshold chosen on validation for --target-sensitivity, with
95% block-bootstrap intervals (resampling runs of --block consecutive slices, since
neighbouring slices are near-copies) and the same numbers for the held-out block's earlier
and later halves. With --out, the model is written as a shipped model (float16 weights and
model.json) and scored again from those files.

    .venv/bin/python bench/base_model.py --data ../shared/data/kidney-ct \
        --classes normal,stone,cyst,tumor --augmentation scanner --out /tmp/base-4class

The last line printed is the report as one JSON object.
"""

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))
from ml_core.classifier import NO_WEIGHTS, build_classifier  # noqa: E402
from ml_core.datasets import block_split, class_counts, folder_manifest  # noqa: E402
from ml_core.decision import (  # noqa: E402
    NEGATIVE_CLASS,
    abnormal_scores,
    binary_report,
    choose_threshold,
)
from ml_core.numbers import rounded  # noqa: E402
from ml_core.precision import resolve_precision, with_precision  # noqa: E402
from ml_core.recipes import FROM_FOLDER, RETRAIN, SCANNER_AUGMENTATION  # noqa: E402
from ml_core.shipped import (  # noqa: E402
    SHIPPED_MODEL_DIR,
    describe_shipped,
    load_shipped,
    save_shipped,
)
from ml_core.training import TRAINING_PRECISIONS, TrainingConfig, predict_entries, train  # noqa: E402

AUGMENTATIONS = {"default": FROM_FOLDER.augmentation, "scanner": SCANNER_AUGMENTATION}
REPORTED_POSITIVE = "stone"
OPERATING_SENSITIVITY = 0.95


def scored_model_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of a bench that scores a shipped model on this module's held-out block."""
    parser.add_argument("--data", required=True, help="Development set: a folder per class.")
    parser.add_argument("--model", default=str(SHIPPED_MODEL_DIR))
    parser.add_argument("--held-out", type=float, default=0.2)
    parser.add_argument("--gap", type=int, default=5)


def validated_model_arguments(parser: argparse.ArgumentParser) -> None:
    """scored_model_arguments, and the validation block's and the precision's."""
    scored_model_arguments(parser)
    parser.add_argument("--precision", default="auto")
    parser.add_argument("--validation", type=float, default=0.15)
    parser.add_argument("--validation-gap", type=int, default=100)


def validation_and_held_out(args):
    """The shipped model (at --precision) with its description, and the development set's
    validation and held-out blocks, stone and normal, as this module splits them."""
    model, description = load_shipped(args.model)
    model = with_precision(model, resolve_precision(args.precision))
    entries = folder_manifest(args.data, [NEGATIVE_CLASS, REPORTED_POSITIVE])
    development, held_out = block_split(entries, fraction=args.held_out, gap=args.gap)
    _, validation = block_split(development, fraction=args.validation, gap=args.validation_gap)
    return model, description, validation, held_out


def stone_report(labels: np.ndarray, scores: np.ndarray, threshold: float) -> dict:
    """Stone against normal: ROC AUC, sensitivity and specificity at the threshold, and the
    specificity the ranking allows at sensitivity >= 0.95 on this very block."""
    positive = labels == REPORTED_POSITIVE
    report = binary_report(positive, scores, threshold)
    operating = choose_threshold(positive, scores, OPERATING_SENSITIVITY)
    return {
        "n": {"stone": int(positive.sum()), "normal": int((~positive).sum())},
        "auc": report["auc"],
        "sensitivity": report["sensitivity"],
        "specificity": report["specificity"],
        "specificity_at_sensitivity_95": binary_report(positive, scores, operating)["specificity"],
    }


def block_bootstrap(
    labels: np.ndarray, scores: np.ndarray, threshold: float, *, block: int, rounds: int, seed=0
) -> dict:
    """95% percentile intervals: each round redraws, per class, runs of `block` consecutive
    slices (with replacement) up to the class's size."""
    rng = np.random.default_rng(seed)
    runs = []
    for label in (REPORTED_POSITIVE, NEGATIVE_CLASS):
        members = np.flatnonzero(labels == label)  # in acquisition order
        runs.append([members[start : start + block] for start in range(0, len(members), block)])
    samples = {key: [] for key in ("auc", "sensitivity", "specificity",
                                   "specificity_at_sensitivity_95")}  # fmt: skip
    for _ in range(rounds):
        chosen = np.concatenate(
            [
                np.concatenate([runs_[i] for i in rng.integers(0, len(runs_), len(runs_))])
                for runs_ in runs
            ]
        )
        report = stone_report(labels[chosen], scores[chosen], threshold)
        for key in samples:
            samples[key].append(report[key])
    return {key: [round(float(np.percentile(values, 2.5)), 4),
                  round(float(np.percentile(values, 97.5)), 4)]
            for key, values in samples.items()}  # fmt: skip


def held_out_report(model, held_out, config: TrainingConfig, threshold: float, args) -> dict:
    entries = [entry for entry in held_out if entry.label in (REPORTED_POSITIVE, NEGATIVE_CLASS)]
    probabilities = predict_entries(model, entries, config.preprocessing, config.batch_size)
    labels = np.array([entry.label for entry in entries])
    scores = abnormal_scores(probabilities, list(config.classes))
    report = stone_report(labels, scores, threshold)
    report["interval_95"] = block_bootstrap(
        labels, scores, threshold, block=args.block, rounds=args.bootstrap
    )
    halves = {}
    for name, part in (("earlier_half", 0), ("later_half", 1)):
        chosen = np.concatenate([
            np.array_split(np.flatnonzero(labels == label), 2)[part]
            for label in (REPORTED_POSITIVE, NEGATIVE_CLASS)
        ])  # fmt: skip
        halves[name] = stone_report(labels[chosen], scores[chosen], threshold)
    report["blocks"] = halves
    # Other abnormal classes the model knows: how many of their held-out slices it flags.
    for label in sorted(set(config.classes) - {NEGATIVE_CLASS, REPORTED_POSITIVE}):
        others = [entry for entry in held_out if entry.label == label]
        other_scores = abnormal_scores(
            predict_entries(model, others, config.preprocessing, config.batch_size),
            list(config.classes),
        )
        report[f"{label}_flagged"] = round(float(np.mean(other_scores >= threshold)), 4)
    report["predictions"] = [
        {"path": entry.path, "label": entry.label, "score": float(score)}
        for entry, score in zip(entries, scores, strict=True)
    ]
    return report


def head_on_base(folder: str, classes: tuple[str, ...]):
    """A new classifier for `classes` whose VGG16 blocks are the shipped model's."""
    base, _ = load_shipped(folder)
    model = build_classifier(list(classes), base.input_shape[1], NO_WEIGHTS)
    for layer in model.layers:
        if layer.name.startswith("block"):
            layer.set_weights(base.get_layer(layer.name).get_weights())
    return model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True, help="Development set: a folder per class.")
    parser.add_argument("--classes", default="normal,stone")
    parser.add_argument("--input-size", type=int, default=FROM_FOLDER.input_size)
    parser.add_argument("--epochs", type=int, default=FROM_FOLDER.epochs)
    parser.add_argument("--learning-rate", type=float, default=FROM_FOLDER.learning_rate)
    parser.add_argument("--augmentation", choices=sorted(AUGMENTATIONS), default="default")
    parser.add_argument("--held-out", type=float, default=0.2)
    parser.add_argument("--gap", type=int, default=5)
    parser.add_argument("--validation", type=float, default=0.15)
    parser.add_argument("--validation-gap", type=int, default=5)
    parser.add_argument("--target-sensitivity", type=float, default=0.95)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--block", type=int, default=20, help="Bootstrap run length, slices.")
    parser.add_argument("--bootstrap", type=int, default=1000)
    parser.add_argument(
        "--head-from",
        help="A shipped model (e.g. trained four-way): train only a new head for --classes on "
        "its convolutional base (the RETRAIN recipe, on the same split) instead.",
    )
    parser.add_argument(
        "--precision",
        choices=TRAINING_PRECISIONS,
        default="float32",
        help="What training computes in (bfloat16: mixed, on CPUs with native bfloat16).",
    )
    parser.add_argument("--out", help="Write the model here as a shipped model.")
    args = parser.parse_args()

    classes = tuple(name.strip() for name in args.classes.split(","))
    initial_model = None
    if args.head_from:
        initial_model = head_on_base(args.head_from, classes)
        args.input_size = initial_model.input_shape[1]
    config = replace(
        FROM_FOLDER,
        classes=classes,
        input_size=args.input_size,
        epochs=args.epochs,
        learning_rate=args.learning_rate,
        max_minutes=0.0,  # the planned schedule is all the epochs, on any machine
        augmentation=AUGMENTATIONS[args.augmentation],
        target_sensitivity=args.target_sensitivity,
        seed=args.seed,
        precision=args.precision,
    )
    if initial_model is not None:
        config = replace(
            RETRAIN, classes=classes, input_size=args.input_size,
            target_sensitivity=args.target_sensitivity, seed=args.seed,
            precision=args.precision,
        )  # fmt: skip
    entries = folder_manifest(args.data, sorted(set(classes) | {REPORTED_POSITIVE}))
    development, held_out = block_split(entries, fraction=args.held_out, gap=args.gap)
    development = [entry for entry in development if entry.label in classes]
    train_entries, validation = block_split(
        development, fraction=args.validation, gap=args.validation_gap
    )
    print(f"train {class_counts(train_entries)}, validation {class_counts(validation)}, "
          f"held out {class_counts(held_out)}", flush=True)  # fmt: skip

    started = time.monotonic()

    def on_epoch_end(epoch: int, row: dict) -> None:
        print(f"epoch {epoch}: {json.dumps(rounded(row))} "
              f"({time.monotonic() - started:.0f} s)", flush=True)  # fmt: skip

    trained = train(
        config, train_entries, validation, initial_model=initial_model, on_epoch_end=on_epoch_end
    )
    seconds = time.monotonic() - started
    report = {
        "command": " ".join(["bench/base_model.py", *sys.argv[1:]]),
        "config": config.to_dict(),
        "split": {
            "train": class_counts(train_entries),
            "validation": class_counts(validation),
            "held_out": class_counts(held_out),
        },
        "training_seconds": round(seconds),
        "epochs_run": len(trained.history),
        "threshold": trained.threshold,
        "validation": {
            key: trained.validation[key] for key in ("auc", "sensitivity", "specificity")
        },
        "held_out": held_out_report(trained.model, held_out, config, trained.threshold, args),
    }
    predictions = report["held_out"].pop("predictions")
    if args.out:
        out = Path(args.out)
        (out / "predictions.json").parent.mkdir(parents=True, exist_ok=True)
        (out / "predictions.json").write_text(json.dumps(predictions))
        save_shipped(trained.model, description_for(trained, report), out)
        stored, _ = load_shipped(out)
        from_files = held_out_report(stored, held_out, config, trained.threshold, args)
        report["held_out_float16_storage"] = {
            key: from_files[key] for key in ("auc", "sensitivity", "specificity")
        }
        describe_shipped(out, description_for(trained, report))  # now with that score
    print(json.dumps(rounded(report)), flush=True)


def description_for(trained, report: dict) -> dict:
    """What bootstrap_model registers with the shipped weights: how to use them, and the
    report that judged them (the command that made them included)."""
    return {
        "classes": list(trained.classes),
        "input_size": trained.preprocessing.input_size,
        "threshold": trained.threshold,
        "preprocessing": trained.preprocessing.to_dict(),
        "report": rounded(report),
    }


if __name__ == "__main__":
    main()
