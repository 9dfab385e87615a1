"""Load a saved classifier once and classify batches of preprocessed images."""

import numpy as np


class Predictor:
    """A loaded Keras model; build one per process and reuse it for every batch."""

    def __init__(self, model, *, max_batch_size: int = 32):
        self.model = model
        self.max_batch_size = max_batch_size

    @classmethod
    def load(cls, path: str, **options) -> "Predictor":
        import keras

        return cls(keras.models.load_model(path, compile=False), **options)

    def predict(self, batch: np.ndarray) -> np.ndarray:
        """(n, size, size, 3) model input -> (n, classes) probabilities, in chunks."""
        chunks = [
            np.asarray(self.model.predict_on_batch(batch[start : start + self.max_batch_size]))
            for start in range(0, len(batch), self.max_batch_size)
        ]
        return np.concatenate(chunks).astype(np.float64)
