"""Split class subfolders in two by acquisition order (the last number in each file name):
the first FRACTION of each class to one folder, the rest to another, as symbolic links (the
images are never copied). The replay's --initial and --stream come from here:

    python bench/split.py DATA --classes normal,stone --fraction 0.6 \
        --first /tmp/kct/initial --rest /tmp/kct/stream
"""

import argparse
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))
from ml_core.datasets import images_in_acquisition_order  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("data", type=Path, help="A folder of class subfolders.")
    parser.add_argument("--classes", default="normal,stone")
    parser.add_argument("--fraction", type=float, default=0.6)
    parser.add_argument("--first", type=Path, required=True)
    parser.add_argument("--rest", type=Path, required=True)
    args = parser.parse_args()
    for label in args.classes.split(","):
        files = images_in_acquisition_order(args.data / label)
        cut = round(args.fraction * len(files))
        for target, part in ((args.first, files[:cut]), (args.rest, files[cut:])):
            folder = target / label
            folder.mkdir(parents=True, exist_ok=True)
            for path in part:
                link = folder / path.name
                if not link.exists():
                    link.symlink_to(path.resolve())
        print(f"{label}: {cut} to {args.first}, {len(files) - cut} to {args.rest}")


if __name__ == "__main__":
    main()
