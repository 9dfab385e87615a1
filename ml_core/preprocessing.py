"""Turn decoded intensity images into VGG16 input: the one definition, used by training and
inference alike. Its parameters are stored with each model version."""

from dataclasses import asdict, dataclass

import numpy as np
from PIL import Image

# keras.applications.vgg16.preprocess_input ("caffe" mode): BGR order, ImageNet channel means
# subtracted, no scaling. Written out here so preprocessing needs no TensorFlow import.
VGG16_BGR_MEANS = np.array([103.939, 116.779, 123.68], dtype=np.float32)
RESAMPLING = {"bilinear": Image.Resampling.BILINEAR, "bicubic": Image.Resampling.BICUBIC}


@dataclass(frozen=True)
class PreprocessingConfig:
    input_size: int
    resample: str = "bilinear"

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> "PreprocessingConfig":
        return cls(**values)


def to_model_input(pixels: np.ndarray, config: PreprocessingConfig) -> np.ndarray:
    """One (height, width) intensity image in [0, 1] -> (size, size, 3) float32 VGG16 input."""
    grey = Image.fromarray(np.clip(pixels, 0.0, 1.0).astype(np.float32), mode="F")
    size = (config.input_size, config.input_size)
    resized = np.asarray(grey.resize(size, RESAMPLING[config.resample]), dtype=np.float32)
    channels = np.repeat((resized * 255.0)[:, :, np.newaxis], 3, axis=2)
    return channels - VGG16_BGR_MEANS


def to_model_batch(images: list[np.ndarray], config: PreprocessingConfig) -> np.ndarray:
    return np.stack([to_model_input(pixels, config) for pixels in images])
