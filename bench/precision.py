"""What reduced precision changes in the shipped model's scores: the held-out block of the
development set (bench/base_model.py's split: the last 20% of each class by file number, after
a 5-slice gap), stone against normal, scored in float32 and in each --precisions, with the
largest change in P(abnormal), the ROC AUC, and sensitivity and specificity at the model's
threshold, and the images/s of each scoring pass side by side.

    .venv/bin/python bench/precision.py --data ../shared/data/kidney-ct

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
from ml_core.datasets import block_split, folder_manifest  # noqa: E402
from ml_core.decision import NEGATIVE_CLASS, abnormal_scores  # noqa: E402
from ml_core.numbers import rounded  # noqa: E402
from ml_core.precision import with_precision  # noqa: E402
from ml_core.preprocessing import PreprocessingConfig  # noqa: E402
from ml_core.shipped import load_shipped  # noqa: E402
from ml_core.training import predict_entries  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    scored_model_arguments(parser)
    parser.add_argument("--precisions", default="bfloat16")
    args = parser.parse_args()

    model, description = load_shipped(args.model)
    classes, threshold = description["classes"], description["threshold"]
    preprocessing = PreprocessingConfig.from_dict(description["preprocessing"])
    entries = folder_manifest(args.data, [NEGATIVE_CLASS, REPORTED_POSITIVE])
    _, held_out = block_split(entries, fraction=args.held_out, gap=args.gap)
    labels = np.array([entry.label for entry in held_out])

    scores, report = {}, {"n": len(held_out), "threshold": threshold}
    for precision in ["float32", *args.precisions.split(",")]:
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
        print(f"{precision}: {json.dumps(rounded(report[precision]))}", flush=True)
    print(json.dumps(rounded(report)))


if __name__ == "__main__":
    main()
