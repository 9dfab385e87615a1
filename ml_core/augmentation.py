"""Training-time augmentation of intensity images: rotation, shifts, zoom and flips in one
affine warp, then gamma, contrast and brightness jitter, blur and noise (exports differ
between scanners, reconstruction kernels and doses). Never applied to validation or
evaluation data."""

from dataclasses import asdict, dataclass

import numpy as np
from scipy import ndimage


@dataclass(frozen=True)
class Augmentation:
    rotation_degrees: float = 10.0
    shift: float = 0.1  # fraction of the side
    zoom: float = 0.1  # scale in [1 - zoom, 1 + zoom]
    horizontal_flip: bool = True
    vertical_flip: bool = False
    contrast: float = 0.0  # intensity scaled by a factor in [1 - contrast, 1 + contrast]
    brightness: float = 0.0  # then shifted by up to this much
    gamma: float = 0.0  # intensity raised to exp(u), u in [-gamma, gamma]
    blur: float = 0.0  # Gaussian blur, sigma in [0, blur] pixels
    noise: float = 0.0  # Gaussian noise, standard deviation in [0, noise]

    @property
    def enabled(self) -> bool:
        return any(
            (
                self.rotation_degrees,
                self.shift,
                self.zoom,
                self.horizontal_flip,
                self.vertical_flip,
                self.contrast,
                self.brightness,
                self.gamma,
                self.blur,
                self.noise,
            )
        )

    def to_dict(self) -> dict:
        return asdict(self)

    def apply(self, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """A randomly warped copy of one (size, size) intensity image; edges fill with 0."""
        if not self.enabled:
            return image
        angle = np.deg2rad(rng.uniform(-self.rotation_degrees, self.rotation_degrees))
        scale = rng.uniform(1.0 - self.zoom, 1.0 + self.zoom)
        flip_rows = -1.0 if self.vertical_flip and rng.random() < 0.5 else 1.0
        flip_cols = -1.0 if self.horizontal_flip and rng.random() < 0.5 else 1.0
        cos, sin = np.cos(angle) / scale, np.sin(angle) / scale
        # Maps output coordinates to input coordinates around the image centre.
        matrix = np.array([[cos, -sin], [sin, cos]]) @ np.diag([flip_rows, flip_cols])
        centre = (np.array(image.shape) - 1) / 2.0
        shift = rng.uniform(-self.shift, self.shift, size=2) * np.array(image.shape)
        offset = centre - matrix @ (centre + shift)
        warped = ndimage.affine_transform(image, matrix, offset=offset, order=1, cval=0.0)
        if self.gamma:
            warped = warped ** np.exp(rng.uniform(-self.gamma, self.gamma))
        if self.contrast or self.brightness:
            factor = rng.uniform(1.0 - self.contrast, 1.0 + self.contrast)
            shift_by = rng.uniform(-self.brightness, self.brightness)
            warped = warped * factor + shift_by
        if self.blur:
            warped = ndimage.gaussian_filter(warped, sigma=rng.uniform(0.0, self.blur))
        if self.noise:
            warped = warped + rng.normal(0.0, rng.uniform(0.0, self.noise), size=warped.shape)
        return np.clip(warped, 0.0, 1.0)


NO_AUGMENTATION = Augmentation(0.0, 0.0, 0.0, False, False)
