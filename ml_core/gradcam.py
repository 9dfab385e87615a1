"""Grad-CAM (Selvaraju et al., 2017) on VGG16's last convolutional layer: where in the image
the evidence for "abnormal" lies. Shown to radiologists as an overlay, never as a finding."""

import io

import numpy as np
from PIL import Image

from ml_core.decision import NEGATIVE_CLASS

LAST_CONV_LAYER = "block5_conv3"


class GradCam:
    """Grad-CAM for one model, built once, on whichever backend Keras runs (TensorFlow, JAX or
    PyTorch): the model is cut after its last convolution, and only the gradient of the
    abnormal score with respect to that layer's activations goes through the backend's own
    API (input_gradient). Explaining a batch costs about one forward and one backward pass."""

    def __init__(self, model, classes: list[str]):
        from ml_core.classifier import split_after

        self._features, head = split_after(model, LAST_CONV_LAYER)
        negative = classes.index(NEGATIVE_CLASS)

        def abnormal(activations):
            probabilities = head(activations, training=False)
            return 1.0 - probabilities[:, negative], probabilities

        self._gradient = input_gradient(abnormal)

    def __call__(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(n, size, size, 3) model input -> the model's (n, classes) probabilities, from the
        same forward pass, and (n, h, w) heatmaps in [0, 1] at the layer's grid for the score
        P(abnormal) = 1 - P(normal)."""
        import keras

        activations = self._features(np.asarray(batch, dtype=np.float32), training=False)
        probabilities, gradients = self._gradient(activations)
        activations = keras.ops.convert_to_numpy(activations).astype(np.float32)
        gradients = keras.ops.convert_to_numpy(gradients).astype(np.float32)
        weights = gradients.mean(axis=(1, 2), keepdims=True)
        maps = np.maximum((weights * activations).sum(axis=-1), 0.0)
        peaks = maps.reshape(len(maps), -1).max(axis=1).reshape(-1, 1, 1)
        heat = np.divide(maps, peaks, out=np.zeros_like(maps), where=peaks > 0)
        return keras.ops.convert_to_numpy(probabilities).astype(np.float64), heat


def input_gradient(function):
    """function(x) -> (per-example scores, aux) becomes x -> (aux, d sum(scores) / dx), on
    the running Keras backend: the one place Grad-CAM depends on it."""
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
    raise NotImplementedError(f"Grad-CAM has no gradient for the {backend!r} backend.")


def overlay_png(heatmap: np.ndarray, width: int, height: int) -> bytes:
    """A transparent-to-red RGBA PNG of the heatmap at the image's size, to lay over it."""
    import matplotlib

    resized = Image.fromarray(heatmap.astype(np.float32), mode="F").resize(
        (width, height), Image.Resampling.BILINEAR
    )
    values = np.clip(np.asarray(resized), 0.0, 1.0)
    colours = matplotlib.colormaps["jet"](values)
    colours[..., 3] = 0.6 * values  # cold areas stay transparent
    output = io.BytesIO()
    Image.fromarray((colours * 255).astype(np.uint8), mode="RGBA").save(output, format="PNG")
    return output.getvalue()
