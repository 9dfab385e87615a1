"""Model artifacts, training manifests and training images, through Django's storage API.

Workers may run on other machines: they share the database, the broker and the storage, never
a local folder. Keras and the image loaders need files: a storage with local paths (the
embedded default's file system) gives them directly; from any other (S3) each machine keeps
a local copy of what it reads, written whole before it is used (names are never reused).
"""

import contextlib
import os
import shutil
import uuid
from dataclasses import replace
from pathlib import Path

from django.conf import settings
from django.core.files import File
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage

from ml_core.datasets import LabelledImage, manifest_digest, manifest_from_json, manifest_to_json

MODELS_FOLDER = "models"
MANIFESTS_FOLDER = "manifests"
# A manifest entry whose path starts with this names a file in storage, not on this machine.
STORAGE_PREFIX = "storage:"


def artifact_store(local_path: Path) -> str:
    """Put a saved model into storage under a new name; return that name."""
    with open(local_path, "rb") as saved:
        return default_storage.save(
            f"{MODELS_FOLDER}/kidney-ct-{uuid.uuid4().hex}.keras", File(saved)
        )


def artifact_delete(name: str) -> None:
    default_storage.delete(name)


def twin_store(xml_path: Path) -> str:
    """Put an int8 twin (its .xml and the .bin beside it) into storage under one new stem;
    return the .xml's name."""
    stem = f"{MODELS_FOLDER}/kidney-ct-{uuid.uuid4().hex}-int8"
    for suffix in (".bin", ".xml"):  # the .xml last: its name is what says the twin is whole
        with open(xml_path.with_suffix(suffix), "rb") as part:
            default_storage.save(f"{stem}{suffix}", File(part))
    return f"{stem}.xml"


def twin_delete(xml_name: str) -> None:
    for name in (xml_name, _twin_weights(xml_name)):
        default_storage.delete(name)


def twin_local_path(xml_name: str) -> Path:
    """The stored twin's .xml as a file on this machine, its .bin beside it."""
    cache = Path(settings.KIDNEY_MODEL_CACHE_DIR)
    weights = _twin_weights(xml_name)
    _local_file(weights, cache / Path(weights).name)
    return _local_file(xml_name, cache / Path(xml_name).name)


def _twin_weights(xml_name: str) -> str:
    return f"{xml_name.removesuffix('.xml')}.bin"


def artifact_local_path(name: str) -> Path:
    """The stored model as a file on this machine (fetched once, if it must be)."""
    return _local_file(name, Path(settings.KIDNEY_MODEL_CACHE_DIR) / Path(name).name)


def model_load(name: str):
    """The stored model as a Keras model (uncompiled: for predicting or further training)."""
    import keras

    return keras.models.load_model(artifact_local_path(name), compile=False)


def storage_reference(name: str) -> str:
    """A manifest path for a file in storage."""
    return f"{STORAGE_PREFIX}{name}"


def manifest_store(entries: list[LabelledImage]) -> str:
    """Store a manifest under its digest (the same entries are stored once); return it."""
    digest = manifest_digest(entries)
    name = _manifest_name(digest)
    if not default_storage.exists(name):
        # A concurrent request may store the same entries under this digest first.
        with contextlib.suppress(FileExistsError):
            default_storage.save(name, ContentFile(manifest_to_json(entries).encode()))
    return digest


def manifest_load(digest: str) -> list[LabelledImage]:
    with default_storage.open(_manifest_name(digest), "rb") as stored:
        return manifest_from_json(stored.read().decode())


def local_entries(entries: list[LabelledImage]) -> list[LabelledImage]:
    """The same entries, each readable on this machine: files in storage are copied into the
    image cache (by content hash) the first time, unless the storage has local paths; local
    paths stay as they are."""
    cache = Path(settings.KIDNEY_IMAGE_CACHE_DIR)
    local = []
    for entry in entries:
        if entry.path.startswith(STORAGE_PREFIX):
            name = entry.path.removeprefix(STORAGE_PREFIX)
            cache_copy = cache / f"{entry.sha256 or uuid.uuid4().hex}{Path(name).suffix}"
            entry = replace(entry, path=str(_local_file(name, cache_copy)))
        local.append(entry)
    return local


def _manifest_name(digest: str) -> str:
    return f"{MANIFESTS_FOLDER}/{digest}.json"


def _local_file(name: str, cache_copy: Path) -> Path:
    try:
        return Path(default_storage.path(name))
    except NotImplementedError:  # no local paths (S3 and the like): a copy
        return _local_copy(name, cache_copy)


def _local_copy(name: str, target: Path) -> Path:
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    draft = target.with_name(f".{target.name}.{os.getpid()}.{uuid.uuid4().hex}")
    try:
        with default_storage.open(name, "rb") as stored, open(draft, "wb") as copy:
            shutil.copyfileobj(stored, copy)
        os.replace(draft, target)
    finally:
        draft.unlink(missing_ok=True)
    return target
