"""Load a saved classifier once and classify batches of preprocessed images."""

import numpy as np


class Predictor:
    """A loaded Keras model; build one per process and reuse it for every batch.

    With an int8 twin (ml_core.int8.OpenVinoPredictor) the probabilities come from the twin;
    evidence maps always come from the Keras model, whose answers the maps are judged on."""

    def __init__(self, model, *, max_batch_size: int = 32, precision: str = "float32"):
        self.model = model
        self.max_batch_size = max_batch_size
        self.twin = None
        self.runtime = f"keras-{precision}"
        self._explainer = None

    @classmethod
    def load(cls, path: str, *, precision: str = "float32", **options) -> "Predictor":
        """precision: float32, bfloat16 or float16 (ml_core.precision; auto resolved already)."""
        import keras

        from ml_core.precision import with_precision

        model = keras.models.load_model(path, compile=False)
        return cls(with_precision(model, precision), precision=precision, **options)

    def serve_twin(self, twin) -> None:
        self.twin = twin
        self.runtime = "openvino-int8"

    def predict(self, batch: np.ndarray) -> np.ndarray:
        """(n, size, size, 3) model input -> (n, classes) probabilities, in chunks."""
        if self.twin is not None:
            return self.twin.predict(batch)
        return self.predict_float(batch)

    def predict_float(self, batch: np.ndarray) -> np.ndarray:
        """predict() by the Keras model, twin or not."""
        chunks = [
            np.asarray(self.model.predict_on_batch(batch[start : start + self.max_batch_size]))
            for start in range(0, len(batch), self.max_batch_size)
        ]
        return np.concatenate(chunks).astype(np.float64)

    def predict_and_explain(
        self, batch: np.ndarray, classes: list[str]
    ) -> tuple[np.ndarray, np.ndarray]:
        """Probabilities and evidence maps (ml_core.evidence); the explainer is built on
        first use."""
        from ml_core.evidence import Occlusion

        if self._explainer is None:
            self._explainer = Occlusion(self.model, classes, max_batch_size=self.max_batch_size)
        return self._explainer(batch)
