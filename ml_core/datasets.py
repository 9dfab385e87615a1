"""Labelled image manifests and honest splits.

A manifest is a list of LabelledImage: where the image is, its class, its acquisition order
and, when known, its study. Neighbouring CT slices are near-duplicates, so splits hold out
contiguous blocks of acquisition order (never a random sample) and keep a study together.
"""

import hashlib
import json
import re
from collections import defaultdict
from dataclasses import asdict, dataclass
from pathlib import Path

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".dcm"}
_NUMBER = re.compile(r"(\d+)")


@dataclass(frozen=True)
class LabelledImage:
    path: str
    label: str
    order: int  # acquisition order: a file number, an upload sequence
    group: str = ""  # study reference; slices of one study are never split apart
    sha256: str = ""


def folder_manifest(root: str | Path, classes: list[str]) -> list[LabelledImage]:
    """Images in `root/<class>/` for each class; order is the number in the file name."""
    entries = []
    for label in classes:
        folder = Path(root) / label
        if not folder.is_dir():
            raise FileNotFoundError(f"No folder for class {label!r}: {folder}")
        for position, path in enumerate(images_in_acquisition_order(folder)):
            entries.append(
                LabelledImage(
                    path=str(path.resolve()),
                    label=label,
                    order=position,
                    sha256=hashlib.sha256(path.read_bytes()).hexdigest(),
                )
            )
    return entries


def images_in_acquisition_order(folder: Path) -> list[Path]:
    """Image files of a folder, by the last number in their name (then by name)."""
    files = [path for path in folder.iterdir() if path.suffix.lower() in IMAGE_SUFFIXES]
    return sorted(files, key=_acquisition_key)


def _acquisition_key(path: Path) -> tuple:
    numbers = _NUMBER.findall(path.stem)
    return (int(numbers[-1]) if numbers else -1, path.name)


def block_split(
    entries: list[LabelledImage],
    *,
    fraction: float,
    gap: int,
    at_most: dict[str, int] | None = None,
) -> tuple[list[LabelledImage], list[LabelledImage]]:
    """(kept, held out): per class, the last `fraction` by acquisition order (or, with
    `at_most`, no more than at_most[label] of it) is held out and the `gap` images just
    before it are dropped; a study with any held-out slice is held out whole."""
    by_class = defaultdict(list)
    for entry in entries:
        by_class[entry.label].append(entry)
    kept, held = [], []
    for label, members in by_class.items():
        members.sort(key=lambda entry: entry.order)
        held_count = round(fraction * len(members))
        if at_most is not None:
            held_count = min(held_count, at_most.get(label, 0))
        if held_count == 0:
            kept += members
            continue
        held += members[len(members) - held_count :]
        kept += members[: max(0, len(members) - held_count - gap)]
    held_groups = {entry.group for entry in held if entry.group}
    moved = [entry for entry in kept if entry.group and entry.group in held_groups]
    kept = [entry for entry in kept if not (entry.group and entry.group in held_groups)]
    return kept, held + moved


def without_neighbours(
    entries: list[LabelledImage], held_out: set[str], *, gap: int
) -> list[LabelledImage]:
    """The entries that may be trained on beside a set held out (by sha256) from anywhere in
    acquisition order: per class, the set's members and the `gap` images on either side of
    each are left out, and so is every slice of a study the set holds a slice of."""
    held_groups = {entry.group for entry in entries if entry.group and entry.sha256 in held_out}
    by_class = defaultdict(list)
    for entry in entries:
        by_class[entry.label].append(entry)
    near = set()
    for members in by_class.values():
        members.sort(key=lambda entry: entry.order)
        for position, entry in enumerate(members):
            if entry.sha256 in held_out:
                near.update(id(m) for m in members[max(0, position - gap) : position + gap + 1])
    return [
        entry
        for entry in entries
        if id(entry) not in near and not (entry.group and entry.group in held_groups)
    ]


def manifest_to_json(entries: list[LabelledImage]) -> str:
    return json.dumps([asdict(entry) for entry in entries], sort_keys=True)


def manifest_from_json(text: str) -> list[LabelledImage]:
    return [LabelledImage(**values) for values in json.loads(text)]


def manifest_digest(entries: list[LabelledImage]) -> str:
    return hashlib.sha256(manifest_to_json(entries).encode()).hexdigest()


def class_counts(entries: list[LabelledImage]) -> dict[str, int]:
    counts = defaultdict(int)
    for entry in entries:
        counts[entry.label] += 1
    return dict(sorted(counts.items()))
