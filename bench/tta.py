"""Test-time augmentation on a shipped model: each slice scored as the mean of itself and its
left-right mirror, against the plain score, stone against normal on the held-out block
(bench/base_model.py's split), each with its threshold chosen the same way on the validation
block (ml_core.decision.choose_threshold for --target-sensitivity there).

    .venv/bin/python bench/tta.py --data ../shared/data/kidney-ct

The last line printed is the report as one JSON object.
"""

import argparse
import json
import sys
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))
from bench.base_model import (  # noqa: E402
    REPORTED_POSITIVE,
    stone_report,
    validated_model_arguments,
    validation_and_held_out,
)
from ml_core.batches import load_intensity  # noqa: E402
from ml_core.decision import abnormal_scores, choose_threshold  # noqa: E402
from ml_core.numbers import rounded  # noqa: E402
from ml_core.preprocessing import PreprocessingConfig, normalise  # noqa: E402

BATCH = 64


def plain_and_mirrored(model, entries, preprocessing, classes) -> dict[str, np.ndarray]:
    """P(abnormal) of each slice as it is, and the mean of it and its mirror image; each
    image is read once."""
    plain, mirrored = [], []
    for start in range(0, len(entries), BATCH):
        pixels = [
            load_intensity(entry.path, preprocessing) for entry in entries[start : start + BATCH]
        ]
        batch = normalise(np.stack(pixels), preprocessing)
        plain.append(np.asarray(model.predict_on_batch(batch)))
        mirrored.append(np.asarray(model.predict_on_batch(batch[:, :, ::-1])))
    plain = np.concatenate(plain)
    return {
        "plain": abnormal_scores(plain, classes),
        "mirror_mean": abnormal_scores((plain + np.concatenate(mirrored)) / 2, classes),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    validated_model_arguments(parser)
    parser.add_argument("--target-sensitivity", type=float, default=0.95)
    args = parser.parse_args()

    model, description, validation, held_out = validation_and_held_out(args)
    classes = description["classes"]
    preprocessing = PreprocessingConfig.from_dict(description["preprocessing"])
    positive = np.array([entry.label == REPORTED_POSITIVE for entry in validation])
    labels = np.array([entry.label for entry in held_out])

    validation_scores = plain_and_mirrored(model, validation, preprocessing, classes)
    held_out_scores = plain_and_mirrored(model, held_out, preprocessing, classes)
    report = {}
    for name, scores in validation_scores.items():
        threshold = choose_threshold(positive, scores, args.target_sensitivity)
        report[name] = {"threshold": threshold,
                        **stone_report(labels, held_out_scores[name], threshold)}  # fmt: skip
        print(f"{name}: {json.dumps(rounded(report[name]))}", flush=True)
    print(json.dumps(rounded(report)))


if __name__ == "__main__":
    main()
