"""How long a study is in a folder of slices numbered in acquisition order: consecutive slices
of one study look alike, so a jump in image content between consecutive file numbers marks a
new study. The split gap (KIDNEY_SPLIT_GAP) must be at least a study long for a held-out
block not to share a study with the training data.

    python bench/study_runs.py ../shared/data/kidney-ct --classes normal,stone
"""

import argparse
import sys
from pathlib import Path

import numpy as np
from PIL import Image

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))
from ml_core.datasets import images_in_acquisition_order  # noqa: E402

SIDE = 48
JUMP = 4.0  # a jump: a difference this many times the folder's median


def study_runs(files: list) -> list[int]:
    """The lengths of the runs of consecutive files (in acquisition order) that look like one
    study: a new run starts where the image content jumps."""
    if len(files) < 2:
        return [len(files)] if files else []
    thumbnails = np.stack(
        [np.asarray(Image.open(path).convert("L").resize((SIDE, SIDE)), np.float32)
         for path in files]
    )  # fmt: skip
    differences = np.abs(np.diff(thumbnails, axis=0)).mean(axis=(1, 2))
    jumps = np.flatnonzero(differences > JUMP * np.median(differences))
    return [int(length) for length in np.diff(np.concatenate([[-1], jumps, [len(files) - 1]]))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("data", type=Path, help="A folder of class subfolders.")
    parser.add_argument("--classes", default="normal,stone")
    args = parser.parse_args()
    for label in args.classes.split(","):
        files = images_in_acquisition_order(args.data / label)
        runs = np.array(study_runs(files))
        low, median, high = np.percentile(runs, [10, 50, 90])
        print(
            f"{label}: {len(files)} slices, {len(runs)} runs; run length median {median:.0f}, "
            f"10th-90th percentile {low:.0f}-{high:.0f}, longest {runs.max()}"
        )


if __name__ == "__main__":
    main()
