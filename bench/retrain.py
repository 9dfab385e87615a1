"""Retraining after new confirmed labels: head retraining with and without the feature cache.

Imports a first set of confirmed labels from the kidney-ct folder, retrains the serving
model's head once (filling the cache), imports 100 more labels, then retrains the head on all
labels twice: with the cache (features extracted only for the new images) and with the cache
emptied (features extracted for every image). Times are the training runs' own durations.

    .venv/bin/python bench/retrain.py --data ../shared/data/kidney-ct [--input-size 128]
"""

import argparse
import re
import shutil
import sys
import tempfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))
from bench.stack import isolated_environment, manage  # noqa: E402

HEAD_RETRAINING = [
    "train", "--from-labels", "--warm-start", "--mode", "head", "--epochs", "30",
    "--learning-rate", "0.001", "--patience", "10", "--no-augmentation",
]  # fmt: skip


def linked_subset(data: Path, target: Path, counts: dict[str, tuple[int, int]]) -> Path:
    """A folder of links to images [start, stop) of each class, in file-number order."""
    for label, (start, stop) in counts.items():
        folder = target / label
        folder.mkdir(parents=True)
        files = sorted(
            (data / label).glob("*.jpg"), key=lambda p: int(re.findall(r"\d+", p.stem)[-1])
        )
        for path in files[start:stop]:
            (folder / path.name).symlink_to(path.resolve())
    return target


def run_seconds(output: str) -> float:
    return float(re.search(r"in ([\d.]+) s", output).group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True)
    parser.add_argument("--input-size", type=int, default=128)
    parser.add_argument("--first", type=int, default=800, help="Labels before the 100 new.")
    args = parser.parse_args()
    data = Path(args.data)
    work = Path(tempfile.mkdtemp(prefix="kidney-retrain-"))
    environment = isolated_environment(str(work / "data"))
    stones = args.first // 4
    first = {"normal": (0, args.first - stones), "stone": (0, stones)}
    new = {
        "normal": (args.first - stones, args.first - stones + 50),
        "stone": (stones, stones + 50),
    }
    manage(environment, "migrate", "--noinput")
    manage(environment, "bootstrap_model", "--placeholder", "--input-size", str(args.input_size))
    manage(environment, "import_dataset", str(linked_subset(data, work / "first", first)))
    initial = run_seconds(manage(environment, *HEAD_RETRAINING))
    manage(environment, "import_dataset", str(linked_subset(data, work / "new", new)))
    with_cache = run_seconds(manage(environment, *HEAD_RETRAINING))
    shutil.rmtree(work / "data" / "feature-cache")
    without_cache = run_seconds(manage(environment, *HEAD_RETRAINING))
    print(f"head retraining at {args.input_size} px, {args.first} labels then 100 new:")
    print(f"  first run (fills the cache):               {initial:7.1f} s")
    print(f"  after 100 new labels, with feature cache:    {with_cache:7.1f} s")
    print(f"  after 100 new labels, without feature cache: {without_cache:7.1f} s")
    print(f"  ratio without / with cache: {without_cache / with_cache:.1f}")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
