"""Prepare what bench/gpu_check.sh needs on the lent GPU machine, which reaches no registry and
takes at most 64 MiB from the working tree: a packed copy of the development images and the
wheels that machine lacks (Keras 3 and what it needs beyond its JAX image; see the device
README's package list).

The packed copy: every --stride-th slice of each class (neighbouring slices are near-copies,
so little is lost), greyscale JPEG at --quality, names kept so that file numbers still give
acquisition order. Written to .gpu/ (git-ignored; `run` carries it).

    .venv/bin/python bench/gpu_pack.py --data ../shared/data/kidney-ct
"""

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

from PIL import Image

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))
from ml_core.datasets import images_in_acquisition_order  # noqa: E402

CLASSES = ("normal", "stone", "cyst", "tumor")
# Missing from the GPU machine's image (Python 3.12, JAX 0.11): pinned to this venv's versions.
WHEELS = ("keras==3.15.1", "namex==0.1.0", "optree==0.20.0", "pydicom==3.0.2")
PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64")


def pack_images(data: Path, out: Path, *, classes, stride: int, quality: int) -> int:
    count = 0
    for label in classes:
        folder = out / label
        folder.mkdir(parents=True)
        for path in images_in_acquisition_order(data / label)[::stride]:
            with Image.open(path) as image:
                image.convert("L").save(folder / f"{path.stem}.jpg", quality=quality)
            count += 1
    return count


def download_wheels(out: Path) -> None:
    platforms = [option for name in PLATFORMS for option in ("--platform", name)]
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
         "--python-version", "3.12", "--implementation", "cp", *platforms, "-d", str(out),
         *WHEELS],
        check=True,
    )  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True, type=Path)
    parser.add_argument("--out", type=Path, default=REPO_ROOT / ".gpu")
    parser.add_argument("--stride", type=int, default=3)
    parser.add_argument("--classes", default=",".join(CLASSES))
    parser.add_argument("--quality", type=int, default=70)
    args = parser.parse_args()
    shutil.rmtree(args.out, ignore_errors=True)
    images = pack_images(args.data, args.out / "kidney-ct", classes=args.classes.split(","),
                         stride=args.stride, quality=args.quality)  # fmt: skip
    download_wheels(args.out / "wheels")
    size = sum(path.stat().st_size for path in args.out.rglob("*") if path.is_file())
    print(f"{images} images and {len(WHEELS)} wheels in {args.out}: {size / 2**20:.1f} MiB")


if __name__ == "__main__":
    main()
