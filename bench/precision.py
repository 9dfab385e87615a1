"""What reduced precision changes in the shipped model's scores: the held-out block of the
development set (bench/base_model.py's split: the last 20% of each class by file number, after
a 5-slice gap), stone against normal, scored in float32 and in each --precisions, with the
largest change in P(abnormal), the ROC AUC, and sensitivity and specificity at the model's
threshold, and the images/s of each scoring pass side by side.

`int8` is the model's int8 twin on OpenVINO (ml_core.int8), calibrated on 300 images of the
training block (evenly spaced; the validation block and the held-out block never), with its
gate against float32 on the held-out block (and on each half of it). --write-int8 records its
activation ranges and that gate in the shipped model's model.json, from which bootstrap_model
rebuilds the same twin.

    .venv/bin/python bench/precision.py --data ../shared/data/kidney-ct --precisions bfloat16,int8

The last line printed is the report as one JSON object.
"""

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))
from bench.base_model import (  # noqa: E402
    REPORTED_POSITIVE,
    scored_model_arguments,
    stone_report,
)
from ml_core import int8  # noqa: E402
from ml_core.datasets import block_split, folder_manifest  # noqa: E402
from ml_core.decision import NEGATIVE_CLASS, abnormal_scores  # noqa: E402
from ml_core.numbers import rounded  # noqa: E402
from ml_core.precision import with_precision  # noqa: E402
from ml_core.preprocessing import PreprocessingConfig  # noqa: E402
from ml_core.shipped import describe_shipped, load_shipped  # noqa: E402
from ml_core.training import predict_entries  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    scored_model_arguments(parser)
    parser.add_argument("--validation", type=float, default=0.15)
    parser.add_argument("--validation-gap", type=int, default=100)
    parser.add_argument("--precisions", default="bfloat16", help="Beside float32; int8 too.")
    parser.add_argument(
        "--write-int8", action="store_true", help="Record the int8 twin in --model's model.json."
    )
    args = parser.parse_args()

    model, description = load_shipped(args.model)
    classes, threshold = description["classes"], description["threshold"]
    preprocessing = PreprocessingConfig.from_dict(description["preprocessing"])
    entries = folder_manifest(args.data, [NEGATIVE_CLASS, REPORTED_POSITIVE])
    development, held_out = block_split(entries, fraction=args.held_out, gap=args.gap)
    training_block, _ = block_split(development, fraction=args.validation, gap=args.validation_gap)
    labels = np.array([entry.label for entry in held_out])

    scores, report = {}, {"n": len(held_out), "threshold": threshold}
    for precision in ["float32", *args.precisions.split(",")]:
        if precision == "int8":
            calibration = int8.evenly_spaced(training_block, int8.CALIBRATION_IMAGES)
            twin = int8.quantize(model, int8.calibration_batches(calibration, preprocessing))
            served = int8.OpenVinoPredictor(twin, max_batch_size=32)
        else:
            served = with_precision(model, precision)
        predict_entries(served, held_out[:32], preprocessing)  # warm-up: tracing
        started = time.perf_counter()
        probabilities = predict_entries(served, held_out, preprocessing)
        seconds = time.perf_counter() - started
        scores[precision] = abnormal_scores(probabilities, classes)
        report[precision] = {
            **stone_report(labels, scores[precision], threshold),
            "images_per_second": len(held_out) / seconds,
        }
        if precision != "float32":
            baseline = report["float32"]
            report[precision]["change"] = {
                "max_abs_score": float(np.max(np.abs(scores[precision] - scores["float32"]))),
                "decisions_changed": int(
                    np.sum((scores[precision] >= threshold) != (scores["float32"] >= threshold))
                ),
                **{
                    key: report[precision][key] - baseline[key]
                    for key in ("auc", "sensitivity", "specificity")
                },
            }
        if precision == "int8":
            report["int8"]["gate"] = int8_gate(labels, scores, threshold)
            if args.write_int8:
                describe_shipped(
                    args.model,
                    {
                        **description,
                        "int8": {
                            "ranges": int8.activation_ranges(twin),
                            "held_out": report["int8"]["gate"]["held_out"],
                            "command": "bench/precision.py " + " ".join(sys.argv[1:]),
                        },
                    },
                )
        print(f"{precision}: {json.dumps(rounded(report[precision]))}", flush=True)
    print(json.dumps(rounded(report)))


def int8_gate(labels, scores, threshold) -> dict:
    """The twin's gate on the held-out block, and on the earlier and the later half of each
    class (each class is in acquisition order)."""
    positive = labels == REPORTED_POSITIVE
    gates = {}
    for part in ("held_out", "earlier_half", "later_half"):
        rows = np.concatenate(
            [
                _part(np.flatnonzero(labels == label), part)
                for label in (NEGATIVE_CLASS, REPORTED_POSITIVE)
            ]
        )
        gates[part] = int8.twin_gate(
            positive[rows], scores["float32"][rows], scores["int8"][rows], threshold
        )
    return gates


def _part(rows: np.ndarray, part: str) -> np.ndarray:
    half = len(rows) // 2
    return {"held_out": rows, "earlier_half": rows[:half], "later_half": rows[half:]}[part]


if __name__ == "__main__":
    main()
