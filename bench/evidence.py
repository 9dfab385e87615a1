"""Evidence maps, measured for faithfulness on the slices a radiologist looks at first: the
held-out block's flagged slices (P(abnormal) at or above the model's threshold), the stone
slices among them reported apart.

For each method, side by side in one run on the same slices:
- usable: the share of slices whose map has any signal;
- deletion and insertion AUC (Petsiuk et al., 2018): the pixels are blanked (deletion) or
  restored onto a blank slice (insertion) in the order the map ranks them, and P(abnormal) is
  averaged over the fractions 0, 1/steps, ..., 1; against the same curves in a random order.
  A faithful map deletes fast (low) and inserts fast (high). The blank is the slice blurred
  by a Gaussian of 8 px at 128 (a stone-sized detail goes, the slice stays one the model
  knows); `mean_` and `black_` blank to the slice's mean value and to black instead, which
  this model reads as abnormal (an all-black slice scores 0.92). `fall_at_tenth` is how much
  P(abnormal) falls when the tenth of the slice the map ranks highest is blanked;
- randomised: the Spearman rank correlation of each map with the map of the same model with
  its top block (block5) re-initialised (Adebayo et al., 2018): a map that barely changes
  does not explain this model. With a 95% bootstrap interval over the slices, and
  `randomised_other_slice`: the same against the randomised map of another slice, which is
  what the slices' aligned anatomy alone gives. The randomised model's occlusion maps are
  taken without the service's signal floor (a flat map has no ranks); `randomised_empty` is
  the share of them that the floor would have emptied. `--cascade` adds Adebayo et al.'s
  cascade for the served map: the output layer, the head, block5 and block4 randomised in
  turn from the top;
- cost: forward passes (a backward pass counted as two) and milliseconds per slice.

    .venv/bin/python bench/evidence.py --data ../shared/data/kidney-ct --figure /tmp/evidence.png

The last line printed is the report as one JSON object.
"""

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))
from bench.base_model import (  # noqa: E402
    REPORTED_POSITIVE,
    validated_model_arguments,
    validation_and_held_out,
)
from ml_core.batches import load_intensity  # noqa: E402
from ml_core.classifier import split_after  # noqa: E402
from ml_core.decision import NEGATIVE_CLASS, abnormal_scores  # noqa: E402
from ml_core.evidence import (  # noqa: E402
    Occlusion,
    blank_like,
    patch_starts,
    randomised_layers,
    rank_correlation,
)
from ml_core.numbers import rounded  # noqa: E402
from ml_core.preprocessing import PreprocessingConfig, normalise  # noqa: E402
from ml_core.training import predict_entries  # noqa: E402


def input_gradient(function):
    """function(x) -> (per-example scores, aux) becomes x -> (aux, d sum(scores) / dx), on
    the running Keras backend: the one place the gradient methods depend on it."""
    import keras

    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        @tf.function(reduce_retracing=True)
        def tensorflow_gradient(inputs):
            with tf.GradientTape() as tape:
                tape.watch(inputs)
                scores, aux = function(inputs)
            return aux, tape.gradient(scores, inputs)

        return tensorflow_gradient
    if backend == "jax":
        import jax

        def total(inputs):
            scores, aux = function(inputs)
            return scores.sum(), aux

        step = jax.jit(jax.value_and_grad(total, has_aux=True))

        def jax_gradient(inputs):
            (_, aux), gradient = step(inputs)
            return aux, gradient

        return jax_gradient
    if backend == "torch":
        import torch

        def torch_gradient(inputs):
            inputs = inputs.detach().requires_grad_(True)
            scores, aux = function(inputs)
            (gradient,) = torch.autograd.grad(scores.sum(), inputs)
            return aux.detach(), gradient

        return torch_gradient
    raise NotImplementedError(f"The bench has no gradient for the {backend!r} backend.")


def upsampled(maps: np.ndarray, size: int) -> np.ndarray:
    return np.stack(
        [
            np.asarray(
                Image.fromarray(m.astype(np.float32), mode="F").resize(
                    (size, size), Image.Resampling.BILINEAR
                )
            )
            for m in maps
        ]
    )


class Cam:
    """Grad-CAM (Selvaraju et al., 2017) or Grad-CAM++ (Chattopadhay et al., 2018) on one
    convolutional layer, for P(abnormal)."""

    def __init__(self, model, classes, layer: str, plus_plus: bool = False):
        self._features, head = split_after(model, layer)
        self._plus_plus = plus_plus
        negative = classes.index(NEGATIVE_CLASS)

        def abnormal(activations):
            probabilities = head(activations, training=False)
            return 1.0 - probabilities[:, negative], probabilities

        self._gradient = input_gradient(abnormal)
        self.passes = 3

    def __call__(self, batch):
        import keras

        activations = self._features(batch, training=False)
        probabilities, gradients = self._gradient(activations)
        activations = keras.ops.convert_to_numpy(activations).astype(np.float64)
        gradients = keras.ops.convert_to_numpy(gradients).astype(np.float64)
        if self._plus_plus:
            # The closed form for an exponential score: alpha = g^2 / (2 g^2 + sum(A) g^3).
            squared = gradients**2
            denominator = 2 * squared + activations.sum(axis=(1, 2), keepdims=True) * gradients**3
            alpha = np.divide(
                squared, denominator, out=np.zeros_like(squared), where=denominator != 0
            )
            weights = (alpha * np.maximum(gradients, 0)).sum(axis=(1, 2), keepdims=True)
        else:
            weights = gradients.mean(axis=(1, 2), keepdims=True)
        maps = np.maximum((weights * activations).sum(axis=-1), 0.0)
        return keras.ops.convert_to_numpy(probabilities).astype(np.float64), peak_scaled(maps)


class Rise:
    """RISE (Petsiuk et al., 2018): P(abnormal) under random masks (cells of an 8 x 8 grid kept
    with probability 1/2, smoothed and shifted), each pixel weighted by how often it was kept
    when the score was high."""

    def __init__(self, model, classes, masks: int = 256, cells: int = 8, seed: int = 0):
        self._model, self._classes = model, classes
        size = int(model.input_shape[1])
        rng = np.random.default_rng(seed)
        cell = int(np.ceil(size / cells))
        grids = (rng.random((masks, cells + 1, cells + 1)) < 0.5).astype(np.float32)
        self._masks = np.empty((masks, size, size), dtype=np.float32)
        for number, grid in enumerate(grids):
            big = np.asarray(
                Image.fromarray(grid, mode="F").resize(
                    ((cells + 1) * cell, (cells + 1) * cell), Image.Resampling.BILINEAR
                )
            )
            top, left = rng.integers(0, cell, 2)
            self._masks[number] = big[top : top + size, left : left + size]
        self.passes = masks + 1

    def __call__(self, batch):
        probabilities = predict(self._model, batch)
        maps = []
        for image in batch:
            blank = blank_like(image)
            masked = blank + (image[np.newaxis] - blank) * self._masks[..., np.newaxis]
            scores = abnormal_scores(predict(self._model, masked), self._classes)
            maps.append(np.tensordot(scores, self._masks, axes=1) / self._masks.sum(axis=0))
        maps = np.stack(maps)
        maps = maps - maps.min(axis=(1, 2), keepdims=True)
        return probabilities, peak_scaled(maps)


class IntegratedGradients:
    """Integrated gradients (Sundararajan et al., 2017) from the blank slice, positive part,
    summed over channels and smoothed over 4 px."""

    def __init__(self, model, classes, steps: int = 16):
        negative = classes.index(NEGATIVE_CLASS)
        self._model, self._steps = model, steps

        def abnormal(inputs):
            probabilities = model(inputs, training=False)
            return 1.0 - probabilities[:, negative], probabilities

        self._gradient = input_gradient(abnormal)
        self.passes = 3 * steps + 1

    def __call__(self, batch):
        import keras

        probabilities = predict(self._model, batch)
        maps = []
        for image in batch:
            blank = blank_like(image)
            alphas = (np.arange(self._steps, dtype=np.float32) + 0.5) / self._steps
            path = blank + alphas[:, None, None, None] * (image - blank)
            _, gradients = self._gradient(path)
            gradients = keras.ops.convert_to_numpy(gradients).astype(np.float64)
            attribution = ((image - blank) * gradients.mean(axis=0)).sum(axis=-1)
            maps.append(box_smoothed(np.maximum(attribution, 0.0), 4))
        return probabilities, peak_scaled(np.stack(maps))


class OcclusionAt(Occlusion):
    """The service's occlusion with another grid or blank, for the bench's comparison."""

    def __init__(self, model, classes, patch: int = 16, stride: int = 8, blank=blank_like):
        super().__init__(model, classes)
        self.blank = blank
        self.patch = patch
        starts = patch_starts(int(model.input_shape[1]), patch, stride)
        self.positions = [(top, left) for top in starts for left in starts]


def box_smoothed(image: np.ndarray, width: int) -> np.ndarray:
    padded = np.pad(image, width // 2, mode="edge")
    sums = np.cumsum(np.cumsum(padded, axis=0), axis=1)
    sums = np.pad(sums, ((1, 0), (1, 0)))
    h, w = image.shape
    return (
        sums[width : width + h, width : width + w]
        - sums[:h, width : width + w]
        - sums[width : width + h, :w]
        + sums[:h, :w]
    ) / width**2


def peak_scaled(maps: np.ndarray) -> np.ndarray:
    peaks = maps.reshape(len(maps), -1).max(axis=1).reshape(-1, 1, 1)
    return np.divide(maps, peaks, out=np.zeros_like(maps), where=peaks > 0).astype(np.float32)


def predict(model, inputs, batch_size: int = 64) -> np.ndarray:
    return np.concatenate(
        [
            np.asarray(model.predict_on_batch(inputs[start : start + batch_size]))
            for start in range(0, len(inputs), batch_size)
        ]
    ).astype(np.float64)


def methods(model, classes) -> dict:
    occlusion = Occlusion(model, classes)
    occlusion.passes = len(occlusion.positions) + 1
    coarse = OcclusionAt(model, classes, patch=16, stride=16)
    coarse.passes = len(coarse.positions) + 1
    black = OcclusionAt(model, classes, blank=lambda image: np.full_like(image, image.min()))
    blur = OcclusionAt(model, classes, blank=blurred)
    for variant in (black, blur):
        variant.passes = occlusion.passes
    return {
        "occlusion": occlusion,
        "occlusion_coarse": coarse,
        "occlusion_black_blank": black,
        "occlusion_blurred_blank": blur,
        "grad_cam": Cam(model, classes, "block5_conv3"),
        "grad_cam_block4": Cam(model, classes, "block4_conv3"),
        "grad_cam_plus_plus": Cam(model, classes, "block5_conv3", plus_plus=True),
        "rise": Rise(model, classes),
        "integrated_gradients": IntegratedGradients(model, classes),
    }


def blurred(image: np.ndarray) -> np.ndarray:
    from scipy.ndimage import gaussian_filter

    sigma = image.shape[0] / 16
    return gaussian_filter(image, sigma=(sigma, sigma, 0), mode="nearest")


def curves(model, classes, image, order, steps: int) -> dict:
    """Deletion and insertion AUC, and the fall at a tenth deleted, for pixels in this order,
    with each blank: blurred (unprefixed), the mean and black."""
    size = image.shape[0]
    fractions = np.linspace(0.0, 1.0, steps + 1)
    blanks = {
        "": blurred(image),
        "mean_": blank_like(image),
        "black_": np.full_like(image, image.min()),
    }
    result = {}
    for prefix, blank in blanks.items():
        inputs = []
        for fraction in [*fractions, 0.1]:
            pixels = np.unravel_index(order[: int(fraction * size * size + 0.5)], (size, size))
            for start, source in ((image, blank), (blank, image)):
                changed = start.copy()
                changed[pixels] = source[pixels]
                inputs.append(changed)
        scores = abnormal_scores(predict(model, np.stack(inputs)), classes).reshape(-1, 2)
        deletion, insertion = scores[:-1].T
        result[f"{prefix}deletion_auc"] = float(np.trapezoid(deletion, fractions))
        result[f"{prefix}insertion_auc"] = float(np.trapezoid(insertion, fractions))
        result[f"{prefix}fall_at_tenth"] = float(scores[0, 0] - scores[-1, 0])
    return result


def ranked(evidence_map: np.ndarray, rng) -> np.ndarray:
    """Pixels from the map's highest to its lowest, ties in random order."""
    flat = evidence_map.ravel()
    return np.lexsort((rng.random(flat.size), -flat))


def summary(values) -> float | None:
    return rounded(float(np.mean(values))) if len(values) else None


def mean_interval(values, rounds: int = 2000, seed: int = 0) -> list[float] | None:
    """95% percentile bootstrap interval of the mean, slices redrawn with replacement."""
    if len(values) < 2:
        return None
    rng = np.random.default_rng(seed)
    values = np.asarray(values)
    means = [values[rng.integers(0, len(values), len(values))].mean() for _ in range(rounds)]
    return [rounded(float(np.percentile(means, 2.5))), rounded(float(np.percentile(means, 97.5)))]


def curve_summary(measured: list[dict], is_stone: np.ndarray) -> dict:
    if not measured:
        return {}
    result = {key: summary([c[key] for c in measured]) for key in measured[0]}
    result["deletion_auc_stone"] = summary(
        [c["deletion_auc"] for c, s in zip(measured, is_stone, strict=True) if s]
    )
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    validated_model_arguments(parser)
    parser.add_argument("--limit", type=int, default=40, help="Flagged slices compared.")
    parser.add_argument("--randomised-limit", type=int, default=12)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--methods", default="", help="Comma-separated; all by default.")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--cascade",
        action="store_true",
        help="The served map against the cascade from the top (the output layer, the head, "
        "block5, block4 randomised in turn) on the --randomised-limit slices.",
    )
    parser.add_argument("--figure", default="", help="Write slices and their maps to this PNG.")
    parser.add_argument(
        "--usable-only",
        action="store_true",
        help="Maps only: the share usable and the cost, without the curves (a whole block).",
    )
    args = parser.parse_args()

    model, description, _, held_out = validation_and_held_out(args)
    classes = description["classes"]
    config = PreprocessingConfig.from_dict(description["preprocessing"])
    threshold = description["threshold"]
    entries = [e for e in held_out if e.label in (REPORTED_POSITIVE, NEGATIVE_CLASS)]
    scores = abnormal_scores(predict_entries(model, entries, config), classes)
    flagged = np.flatnonzero(scores >= threshold)
    rng = np.random.default_rng(args.seed)
    chosen = np.sort(rng.permutation(flagged)[: args.limit])
    images = normalise(np.stack([load_intensity(entries[i].path, config) for i in chosen]), config)
    is_stone = np.array([entries[i].label == REPORTED_POSITIVE for i in chosen])
    size = images.shape[1]
    print(
        f"{len(flagged)} of {len(entries)} held-out slices flagged at {threshold:.4f}; "
        f"comparing {len(chosen)} ({int(is_stone.sum())} stone)",
        flush=True,
    )

    explainers = methods(model, classes)
    if args.methods:
        explainers = {name: explainers[name] for name in args.methods.split(",")}
    randomised = randomised_layers(model)
    randomised_explainers = methods(randomised, classes)
    for explainer in randomised_explainers.values():
        explainer.min_signal = 0.0
    floor = Occlusion.min_signal
    order_rng = np.random.default_rng(args.seed + 1)
    random_curves = [
        curves(model, classes, image, order_rng.permutation(size * size), args.steps)
        for image in ([] if args.usable_only else images)
    ]
    report = {
        "slices": {"flagged": len(flagged), "compared": len(chosen),
                   "stone": int(is_stone.sum())},
        "random_order": curve_summary(random_curves, is_stone),
        "methods": {},
    }  # fmt: skip
    all_maps = {}
    for name, explainer in explainers.items():
        explainer(images[:1])  # built and traced before it is timed
        started = time.perf_counter()
        _, maps = explainer(images)
        milliseconds = (time.perf_counter() - started) * 1000 / len(images)
        maps = upsampled(maps, size)
        all_maps[name] = maps
        usable = maps.reshape(len(maps), -1).max(axis=1) > 0
        measured = [
            curves(model, classes, image, ranked(m, order_rng), args.steps)
            for image, m in zip([] if args.usable_only else images, maps, strict=False)
        ]
        few = slice(0, args.randomised_limit)
        correlations, other_slice, emptied = [], [], []
        if args.randomised_limit > 0 and not args.usable_only:
            randomised_explainer = randomised_explainers[name]
            _, random_maps = randomised_explainer(images[few])
            if isinstance(randomised_explainer, Occlusion):
                emptied = list(randomised_explainer.last_peaks < floor)
            correlations, other_slice = agreement(maps[few], upsampled(random_maps, size))
        report["methods"][name] = {
            "usable": rounded(float(usable.mean())),
            "usable_stone": rounded(float(usable[is_stone].mean())) if is_stone.any() else None,
            **curve_summary(measured, is_stone),
            "randomised_rank_correlation": summary(correlations),
            "randomised_rank_correlation_interval": mean_interval(correlations),
            "randomised_other_slice": summary(other_slice),
            "randomised_empty": summary(emptied),
            "forward_passes": explainer.passes,
            "ms_per_slice": round(milliseconds, 1),
        }
        print(name, json.dumps(report["methods"][name]), flush=True)
    if args.cascade:
        few = slice(0, args.randomised_limit)
        served = all_maps.get("occlusion")
        if served is None:
            served = upsampled(Occlusion(model, classes)(images[few])[1], size)
        report["cascade"] = cascade(model, classes, images[few], served[few], size)
    if args.figure:
        write_figure(args.figure, images, all_maps, is_stone)
    print(json.dumps(report))


# Adebayo et al.'s cascade: from the output layer down, each step randomising one more.
CASCADE = ("probabilities", "head_dense", "block5_", "block4_")


def cascade(model, classes, images, served: np.ndarray, size: int) -> dict:
    """The served maps' rank correlation with the maps of the model randomised from the top
    down to each step of CASCADE (and against another slice's, the anatomy's share)."""
    result = {}
    for depth in range(1, len(CASCADE) + 1):
        explainer = Occlusion(randomised_layers(model, CASCADE[:depth]), classes)
        explainer.min_signal = 0.0
        correlations, other_slice = agreement(served, upsampled(explainer(images)[1], size))
        step = "+".join(CASCADE[:depth])
        result[step] = {
            "rank_correlation": summary(correlations),
            "interval": mean_interval(correlations),
            "other_slice": summary(other_slice),
        }
        print("cascade", step, json.dumps(result[step]), flush=True)
    return result


def agreement(maps: np.ndarray, random_maps: np.ndarray) -> tuple[list, list]:
    """Each map's rank correlation with its slice's randomised map, and with the next
    slice's (what the slices' aligned anatomy alone gives)."""
    same = [rank_correlation(m, r) for m, r in zip(maps, random_maps, strict=True)]
    others = np.roll(random_maps, 1, axis=0)
    other = [rank_correlation(m, r) for m, r in zip(maps, others, strict=True)]
    return same, other


def write_figure(path: str, images: np.ndarray, all_maps: dict, is_stone: np.ndarray) -> None:
    """Four stone slices (rows): the slice, then each method's map over it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = np.flatnonzero(is_stone)[:4]
    names = list(all_maps)
    figure, axes = plt.subplots(
        len(rows), len(names) + 1, figsize=(2 * (len(names) + 1), 2 * len(rows)), squeeze=False
    )
    for r, row in enumerate(rows):
        grey = (images[row, ..., 0] - images[row].min()) / np.ptp(images[row])
        axes[r, 0].imshow(grey, cmap="gray")
        axes[0, 0].set_title("slice", fontsize=8)
        for c, name in enumerate(names, start=1):
            axes[r, c].imshow(grey, cmap="gray")
            axes[r, c].imshow(
                all_maps[name][row], cmap="jet", alpha=0.5 * np.clip(all_maps[name][row], 0, 1)
            )
            axes[0, c].set_title(name.replace("_", " "), fontsize=8)
    for axis in axes.ravel():
        axis.axis("off")
    figure.tight_layout()
    figure.savefig(path, dpi=80)


if __name__ == "__main__":
    main()
