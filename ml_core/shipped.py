"""A trained classifier stored as files that ship with the code: its weights in float16 (half
the size of float32; the model card gives what that changes in its scores) and a JSON
description (classes, input size, preprocessing, threshold, held-out metrics, the command that
made it). Loading builds the VGG16 classifier and sets the weights: no training, no download.
"""

import json
from pathlib import Path

import numpy as np

from ml_core.classifier import NO_WEIGHTS, build_classifier

SHIPPED_MODEL_DIR = Path(__file__).resolve().parent / "shipped_model"  # the repository's
WEIGHTS_FILE = "weights.npz"
DESCRIPTION_FILE = "model.json"
FLOAT16_MAX = float(np.finfo(np.float16).max)


def save_shipped(model, description: dict, directory: str | Path) -> Path:
    """Write the model's weights (float16 where they fit in its range) and its description."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    arrays = {}
    for index, weights in enumerate(model.get_weights()):
        weights = np.asarray(weights)
        fits = np.all(np.abs(weights) <= FLOAT16_MAX)
        arrays[f"w{index:03d}"] = weights.astype(np.float16 if fits else np.float32)
    np.savez_compressed(directory / WEIGHTS_FILE, **arrays)
    describe_shipped(directory, {**description, "input_size": int(model.input_shape[1])})
    return directory


def describe_shipped(directory: str | Path, description: dict) -> None:
    """(Re)write the description beside the weights, e.g. once the stored weights are scored."""
    path = Path(directory) / DESCRIPTION_FILE
    path.write_text(json.dumps(description, indent=2, sort_keys=True))


def shipped_description(directory: str | Path) -> dict | None:
    """The description of a shipped model, or None when the directory holds none."""
    path = Path(directory) / DESCRIPTION_FILE
    if not path.is_file() or not (Path(directory) / WEIGHTS_FILE).is_file():
        return None
    return json.loads(path.read_text())


def load_shipped(directory: str | Path):
    """(Keras model in float32, description) from a directory written by save_shipped."""
    directory = Path(directory)
    description = shipped_description(directory)
    if description is None:
        raise FileNotFoundError(f"No shipped model in {directory}.")
    model = build_classifier(description["classes"], description["input_size"], NO_WEIGHTS)
    with np.load(directory / WEIGHTS_FILE) as stored:
        weights = [stored[name].astype(np.float32) for name in sorted(stored.files)]
    model.set_weights(weights)
    return model, description
