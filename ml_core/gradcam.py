"""Grad-CAM (Selvaraju et al., 2017) on VGG16's last convolutional layer: where in the image
the evidence for "abnormal" lies. Shown to radiologists as an overlay, never as a finding."""

import io

import numpy as np
from PIL import Image

from ml_core.decision import NEGATIVE_CLASS

LAST_CONV_LAYER = "block5_conv3"


class GradCam:
    """Grad-CAM for one model, built once: the gradient step is a compiled tf.function, so
    explaining a batch costs about one more forward and backward pass."""

    def __init__(self, model, classes: list[str]):
        import keras
        import tensorflow as tf

        explainer = keras.Model(
            model.input, [model.get_layer(LAST_CONV_LAYER).output, model.output]
        )
        negative = classes.index(NEGATIVE_CLASS)

        @tf.function(reduce_retracing=True)
        def maps(inputs):
            with tf.GradientTape() as tape:
                activations, probabilities = explainer(inputs, training=False)
                abnormal = 1.0 - probabilities[:, negative]
            gradients = tape.gradient(abnormal, activations)
            weights = tf.reduce_mean(gradients, axis=(1, 2), keepdims=True)
            heat = tf.nn.relu(tf.reduce_sum(weights * activations, axis=-1))
            return probabilities, heat

        self._maps = maps

    def __call__(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(n, size, size, 3) model input -> the model's (n, classes) probabilities, from the
        same forward pass, and (n, h, w) heatmaps in [0, 1] at the layer's grid for the score
        P(abnormal) = 1 - P(normal)."""
        probabilities, maps = self._maps(np.asarray(batch, dtype=np.float32))
        maps = maps.numpy()
        peaks = maps.reshape(len(maps), -1).max(axis=1).reshape(-1, 1, 1)
        heat = np.divide(maps, peaks, out=np.zeros_like(maps), where=peaks > 0)
        return np.asarray(probabilities, dtype=np.float64), heat


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
