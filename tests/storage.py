"""A storage with no local paths, as S3 and other object stores are: `path()` raises, so any
code that reaches for a file on disk instead of the storage API fails. The whole test session
(web, workers, commands) runs on it; the files live under MEDIA_ROOT, out of the code's sight.
"""

import os
from pathlib import Path

from django.conf import settings
from django.core.files import File
from django.core.files.storage import Storage
from django.utils.deconstruct import deconstructible


@deconstructible
class NoLocalPathStorage(Storage):
    def __init__(self, location: str = ""):
        self._root = Path(location or settings.MEDIA_ROOT)

    def _file(self, name: str) -> Path:
        return self._root / name

    def path(self, name: str) -> str:
        raise NotImplementedError("This storage has no local paths; use open().")

    def _open(self, name, mode="rb"):
        return File(open(self._file(name), mode), name=name)

    def _save(self, name, content):
        target = self._file(name)
        target.parent.mkdir(parents=True, exist_ok=True)
        # Exclusive creation, as object stores write a name once.
        with open(target, "xb") as written:
            for chunk in content.chunks():
                written.write(chunk)
        return name

    def delete(self, name):
        self._file(name).unlink(missing_ok=True)

    def exists(self, name):
        return self._file(name).exists()

    def size(self, name):
        return self._file(name).stat().st_size

    def listdir(self, path):
        folder = self._file(path)
        entries = list(folder.iterdir()) if folder.is_dir() else []
        return (
            [entry.name for entry in entries if entry.is_dir()],
            [entry.name for entry in entries if entry.is_file()],
        )

    def url(self, name):
        raise NotImplementedError("Media are never public.")

    def get_modified_time(self, name):
        from datetime import UTC, datetime

        return datetime.fromtimestamp(os.path.getmtime(self._file(name)), UTC)
