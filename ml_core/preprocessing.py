"""Turn decoded intensity images into classifier input: the one definition, used by training
and inference alike. Its parameters are stored with each model version."""

from dataclasses import asdict, dataclass

import numpy as np
from PIL import Image

from ml_core.dicom import CtWindow

# keras.applications.vgg16.preprocess_input ("caffe" mode): BGR order, ImageNet channel means
# subtracted, no scaling. Written out here so preprocessing needs no TensorFlow import.
VGG16_BGR_MEANS = np.array([103.939, 116.779, 123.68], dtype=np.float32)
RESAMPLING = {"bilinear": Image.Resampling.BILINEAR, "bicubic": Image.Resampling.BICUBIC}
# "vgg16" matches ImageNet weights; "unit" maps intensity to [-1, 1], which a randomly
# initialised network trains from far more easily than from ImageNet-scaled values;
# "standard" scales each image to mean 0 and standard deviation 1, so that a study exported
# brighter or with more contrast gives the network the same input.
NORMALISATIONS = ("vgg16", "unit", "standard")


@dataclass(frozen=True)
class PreprocessingConfig:
    input_size: int
    resample: str = "bilinear"
    normalisation: str = "vgg16"
    # The CT window through which DICOM Hounsfield units are seen (soft tissue by default).
    window_width: float = 400.0
    window_level: float = 40.0

    def __post_init__(self):
        if self.resample not in RESAMPLING:
            raise ValueError(f"resample must be one of {', '.join(RESAMPLING)}")
        if self.normalisation not in NORMALISATIONS:
            raise ValueError(f"normalisation must be one of {', '.join(NORMALISATIONS)}")

        CtWindow(self.window_width, self.window_level)  # validates

    @property
    def window(self) -> CtWindow:
        return CtWindow(self.window_width, self.window_level)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> "PreprocessingConfig":
        return cls(**values)


def resize_intensity(pixels: np.ndarray, config: PreprocessingConfig) -> np.ndarray:
    """(height, width) intensity in [0, 1] -> (size, size) intensity in [0, 1]."""
    grey = Image.fromarray(np.clip(pixels, 0.0, 1.0).astype(np.float32), mode="F")
    size = (config.input_size, config.input_size)
    return np.asarray(grey.resize(size, RESAMPLING[config.resample]), dtype=np.float32)


def normalise(intensity: np.ndarray, config: PreprocessingConfig) -> np.ndarray:
    """(..., size, size) intensity -> (..., size, size, 3) float32 network input."""
    channels = np.repeat(intensity[..., np.newaxis], 3, axis=-1).astype(np.float32)
    if config.normalisation == "unit":
        return channels * 2.0 - 1.0
    if config.normalisation == "standard":
        axes = (-3, -2, -1)
        spread = np.maximum(channels.std(axis=axes, keepdims=True), 1e-3)
        return (channels - channels.mean(axis=axes, keepdims=True)) / spread
    return channels * 255.0 - VGG16_BGR_MEANS


def to_model_input(pixels: np.ndarray, config: PreprocessingConfig) -> np.ndarray:
    """One decoded intensity image -> (size, size, 3) network input."""
    return normalise(resize_intensity(pixels, config), config)


def to_model_batch(images: list[np.ndarray], config: PreprocessingConfig) -> np.ndarray:
    return np.stack([to_model_input(pixels, config) for pixels in images])
