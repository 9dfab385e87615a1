"""Evidence maps: where in a slice the evidence for "abnormal" lies, by occlusion sensitivity
(Zeiler and Fergus, 2014). A patch of the slice is blanked at a time, and each pixel's value
is how much the log-odds of P(abnormal) fall, on average, when a patch covering it is
blanked. Log-odds, because a model sure of a slice (P = 0.9999) barely moves in probability
when one of several findings is blanked, and would get an empty map. It needs
forward passes only, so it runs on any Keras backend. bench/evidence.py chose it over Grad-CAM,
Grad-CAM++, RISE and integrated gradients by measurement (docs/benchmarks.md). The map shows
where the model's evidence lies. It is not a segmentation of the stone."""

import io

import numpy as np
from PIL import Image

from ml_core.decision import abnormal_scores

# The method and its version, stored with every map: a map made another way is never passed
# off as this one. Bump the version when the map changes for the same model and slice.
METHOD = "occlusion-v1"
# A patch an eighth of the input's side, moved by half of it: 15 x 15 positions on a 128 px
# input. bench/evidence.py measured the coarser and finer grids.
PATCH_FRACTION = 1 / 8
STRIDE_FRACTION = 1 / 16
# Below this fall in log-odds (about a point of P(abnormal) near 0.5), nothing in the slice
# carries the score more than noise does.
MIN_SIGNAL = 0.05


def patch_starts(size: int, patch: int, stride: int) -> list[int]:
    """Where patches start along one side, the last flush with the edge."""
    starts = list(range(0, size - patch + 1, stride))
    if starts[-1] != size - patch:
        starts.append(size - patch)
    return starts


# A patch is blanked with the slice's mean value. bench/evidence.py measured the slice's own
# darkest value (air) and a blurred copy too: the mean's maps were faithful whichever way the
# test blanked pixels (to black, to the mean or to a blur), the others' only to some.
def log_odds(probabilities: np.ndarray) -> np.ndarray:
    clipped = np.clip(probabilities, 1e-7, 1 - 1e-7)
    return np.log(clipped) - np.log1p(-clipped)


def blank_like(image: np.ndarray) -> np.ndarray:
    """(size, size, channels) model input -> the same filled with each channel's mean."""
    return np.broadcast_to(image.mean(axis=(0, 1)), image.shape).astype(image.dtype)


class Occlusion:
    """Occlusion sensitivity for one model. Explaining n slices costs n x positions forward
    passes (225 on a 128 px input), in batches of max_batch_size."""

    method = METHOD
    blank = staticmethod(blank_like)
    min_signal = MIN_SIGNAL

    def __init__(self, model, classes: list[str], *, max_batch_size: int = 64):
        self._model = model
        self._classes = classes
        self._max_batch_size = max_batch_size
        size = int(model.input_shape[1])
        self.patch = max(1, round(size * PATCH_FRACTION))
        stride = max(1, round(size * STRIDE_FRACTION))
        starts = patch_starts(size, self.patch, stride)
        self.positions = [(top, left) for top in starts for left in starts]

    def __call__(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(n, size, size, 3) model input -> the model's (n, classes) probabilities and
        (n, size, size) maps in [0, 1] (scaled by their peak; all zero where the peak fall is
        below min_signal, MIN_SIGNAL unless set)."""
        batch = np.asarray(batch, dtype=np.float32)
        probabilities = self._predict(batch)
        scores = log_odds(abnormal_scores(probabilities, self._classes))
        explained = [self._map(image, score) for image, score in zip(batch, scores, strict=True)]
        # The largest fall in log-odds of each slice, for a caller that measures the floor.
        self.last_peaks = np.array([peak for _, peak in explained])
        return probabilities, np.stack([evidence for evidence, _ in explained])

    def _map(self, image: np.ndarray, score: float) -> tuple[np.ndarray, float]:
        blank = self.blank(image)
        occluded = np.repeat(image[np.newaxis], len(self.positions), axis=0)
        for copy, (top, left) in zip(occluded, self.positions, strict=True):
            patch = (slice(top, top + self.patch), slice(left, left + self.patch))
            copy[patch] = blank[patch]
        falls = score - log_odds(abnormal_scores(self._predict(occluded), self._classes))
        total = np.zeros(image.shape[:2], dtype=np.float64)
        covering = np.zeros(image.shape[:2], dtype=np.float64)
        for fall, (top, left) in zip(falls, self.positions, strict=True):
            total[top : top + self.patch, left : left + self.patch] += fall
            covering[top : top + self.patch, left : left + self.patch] += 1.0
        evidence = np.maximum(total / covering, 0.0)
        peak = evidence.max()
        if peak <= 0 or peak < self.min_signal:
            return np.zeros_like(evidence, dtype=np.float32), float(peak)
        return (evidence / peak).astype(np.float32), float(peak)

    def _predict(self, inputs: np.ndarray) -> np.ndarray:
        return np.concatenate(
            [
                np.asarray(
                    self._model.predict_on_batch(inputs[start : start + self._max_batch_size])
                )
                for start in range(0, len(inputs), self._max_batch_size)
            ]
        ).astype(np.float64)


def rank_correlation(first: np.ndarray, second: np.ndarray) -> float:
    """Spearman's rank correlation of two maps' values, tied values sharing their mean rank
    (ranking ties by position would make any two maps with a common flat area agree there);
    0 when either map is flat."""

    def ranks(values: np.ndarray) -> np.ndarray:
        _, index, counts = np.unique(values.ravel(), return_inverse=True, return_counts=True)
        first_rank = np.cumsum(counts) - counts
        return (first_rank + (counts - 1) / 2.0)[index]

    if np.ptp(first) == 0 or np.ptp(second) == 0:
        return 0.0
    return float(np.corrcoef(ranks(first), ranks(second))[0, 1])


def randomised_layers(model, prefixes: tuple[str, ...] = ("block5_",), *, seed: int = 0):
    """A copy of the model with every layer whose name starts with one of the prefixes and
    that has a kernel and a bias re-initialised (Glorot, zero bias): the check of Adebayo et
    al. (2018) that a map explains this model's weights and not just the image. By default
    the top convolutional block; the head's dense layers ("head_dense", "probabilities") for
    the cascade from the top. Normalisation layers keep their weights."""
    import keras

    copy = keras.models.clone_model(model)
    copy.set_weights(model.get_weights())
    initialiser = keras.initializers.GlorotUniform(seed=seed)
    for layer in copy.layers:
        if layer.name.startswith(prefixes) and len(layer.weights) == 2:
            kernel, bias = layer.get_weights()
            fresh = keras.ops.convert_to_numpy(initialiser(kernel.shape))
            layer.set_weights([fresh.astype(kernel.dtype), np.zeros_like(bias)])
    return copy


def overlay_png(evidence_map: np.ndarray, width: int, height: int) -> bytes:
    """A transparent-to-red RGBA PNG of the map at the image's size, to lay over it; its alpha
    grows with the map's value, so the map can be read back from it."""
    import matplotlib

    resized = Image.fromarray(evidence_map.astype(np.float32), mode="F").resize(
        (width, height), Image.Resampling.BILINEAR
    )
    values = np.clip(np.asarray(resized), 0.0, 1.0)
    colours = matplotlib.colormaps["jet"](values)
    colours[..., 3] = 0.6 * values  # cold areas stay transparent
    output = io.BytesIO()
    Image.fromarray((colours * 255).astype(np.uint8), mode="RGBA").save(output, format="PNG")
    return output.getvalue()
