"""Per-image features of a frozen base, kept on disk so retraining a head extracts features
only for images it has not seen. Keyed by the base's identity and the image's hash."""

import hashlib
import os
import uuid
from pathlib import Path

import numpy as np

from ml_core.batches import load_intensity
from ml_core.datasets import LabelledImage
from ml_core.preprocessing import PreprocessingConfig, normalise


def base_identity(extractor, config: PreprocessingConfig) -> str:
    """Changes whenever the base's weights, the preprocessing or the precision it computes
    in change."""
    digest = hashlib.sha256(repr(sorted(config.to_dict().items())).encode())
    digest.update(repr(sorted({layer.compute_dtype for layer in extractor.layers})).encode())
    for weights in extractor.get_weights():
        digest.update(np.ascontiguousarray(weights).tobytes())
    return digest.hexdigest()[:24]


def extract_features(
    extractor,
    entries: list[LabelledImage],
    config: PreprocessingConfig,
    *,
    batch_size: int,
    cache_dir: Path | None = None,
) -> tuple[np.ndarray, int]:
    """(features, how many were computed); with cache_dir, reuse and store per image."""
    folder = Path(cache_dir) / base_identity(extractor, config) if cache_dir else None
    features: list[np.ndarray | None] = [None] * len(entries)
    if folder is not None:
        folder.mkdir(parents=True, exist_ok=True)
        for row, entry in enumerate(entries):
            cached = folder / f"{entry.sha256}.npy"
            if entry.sha256 and cached.exists():
                features[row] = np.load(cached)
    missing = [row for row, vector in enumerate(features) if vector is None]
    for start in range(0, len(missing), batch_size):
        rows = missing[start : start + batch_size]
        batch = normalise(np.stack([load_intensity(entries[r].path, config) for r in rows]), config)
        # float32 whatever the extractor computes in: a bfloat16 array would not load back.
        vectors = np.asarray(extractor.predict_on_batch(batch), dtype=np.float32)
        for row, vector in zip(rows, vectors, strict=True):
            features[row] = vector
            if folder is not None and entries[row].sha256:
                _save_whole(folder / f"{entries[row].sha256}.npy", vector)
    return np.stack(features), len(missing)


def _save_whole(path: Path, vector: np.ndarray) -> None:
    """Readers (other workers, the web process) never see a half-written file."""
    draft = path.with_name(f".{path.stem}.{uuid.uuid4().hex}.npy")
    np.save(draft, vector)
    os.replace(draft, path)
