"""Stream labelled images from disk in batches, so a dataset larger than memory trains."""

import math
from pathlib import Path

import numpy as np

from ml_core.augmentation import NO_AUGMENTATION, Augmentation
from ml_core.datasets import LabelledImage
from ml_core.images import decode_image
from ml_core.preprocessing import PreprocessingConfig, normalise, resize_intensity

# Training data is trusted more than uploads, but a decode must still be bounded.
MAX_TRAINING_IMAGE_PIXELS = 8192 * 8192


def load_intensity(path: str, config: PreprocessingConfig) -> np.ndarray:
    """Decode one stored image and resize it: (size, size) intensity in [0, 1]."""
    image = decode_image(
        Path(path).read_bytes(), max_pixels=MAX_TRAINING_IMAGE_PIXELS, window=config.window
    )
    return resize_intensity(image.pixels, config)


def make_batches(
    entries: list[LabelledImage],
    classes: list[str],
    config: PreprocessingConfig,
    *,
    batch_size: int,
    augmentation: Augmentation = NO_AUGMENTATION,
    shuffle: bool = False,
    seed: int = 0,
):
    """A keras.utils.PyDataset of (inputs, class indices) read from disk batch by batch."""
    import keras

    class ImageBatches(keras.utils.PyDataset):
        def __init__(self):
            super().__init__(workers=2, use_multiprocessing=False)
            self.epoch = 0
            self.order = np.arange(len(entries))
            self.rng = np.random.default_rng(seed)
            self.labels = np.array([classes.index(entry.label) for entry in entries])
            if shuffle:
                self.rng.shuffle(self.order)

        def __len__(self) -> int:
            return math.ceil(len(entries) / batch_size)

        def __getitem__(self, index: int):
            rows = self.order[index * batch_size : (index + 1) * batch_size]
            # One generator per batch: reproducible, and safe across worker threads.
            rng = np.random.default_rng((seed, index, self.epoch))
            images = [
                augmentation.apply(load_intensity(entries[row].path, config), rng) for row in rows
            ]
            return normalise(np.stack(images), config), self.labels[rows]

        def on_epoch_end(self):
            self.epoch += 1
            if shuffle:
                self.rng.shuffle(self.order)

    return ImageBatches()
