"""Training recipes on in-memory arrays. The bootstrap recipe trains only the head, on
features the frozen base extracts once."""

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ml_core.classifier import NO_WEIGHTS, build_classifier, split_at_features
from ml_core.decision import abnormal_scores, binary_report, choose_threshold
from ml_core.phantoms import PHANTOM_CLASSES, draw_phantom_set
from ml_core.preprocessing import PreprocessingConfig, to_model_batch

EpochCallback = Callable[[int, dict], None]


@dataclass
class TrainedClassifier:
    model: object
    classes: list[str]
    preprocessing: PreprocessingConfig
    threshold: float
    validation: dict


def fit_head(
    model,
    inputs: np.ndarray,
    labels: np.ndarray,
    *,
    epochs: int,
    learning_rate: float = 1e-3,
    batch_size: int = 32,
    on_epoch_end: EpochCallback | None = None,
) -> None:
    """Train the classifier's head with its base frozen, extracting features only once."""
    import keras

    extractor, head = split_at_features(model)
    features = extractor.predict(inputs, batch_size=batch_size, verbose=0)
    head.compile(
        optimizer=keras.optimizers.Adam(learning_rate), loss="sparse_categorical_crossentropy"
    )
    callbacks = []
    if on_epoch_end is not None:
        callbacks.append(
            keras.callbacks.LambdaCallback(
                on_epoch_end=lambda epoch, logs: on_epoch_end(epoch + 1, dict(logs or {}))
            )
        )
    head.fit(features, labels, epochs=epochs, batch_size=batch_size, verbose=0, callbacks=callbacks)


def validate(
    model, inputs: np.ndarray, labels: np.ndarray, classes: list[str], *, target_sensitivity: float
) -> tuple[float, dict]:
    """Choose the threshold for the target sensitivity on validation data; report at it."""
    probabilities = model.predict(inputs, verbose=0)
    scores = abnormal_scores(probabilities, classes)
    is_positive = np.asarray([classes[label] != "normal" for label in labels])
    threshold = choose_threshold(is_positive, scores, target_sensitivity)
    return threshold, binary_report(is_positive, scores, threshold)


def train_on_phantoms(
    *,
    input_size: int,
    samples: int,
    epochs: int,
    target_sensitivity: float,
    seed: int = 0,
    on_epoch_end: EpochCallback | None = None,
) -> TrainedClassifier:
    """A placeholder classifier from synthetic phantoms: random VGG16 base, trained head.

    It lets a fresh install answer end to end; it is not a medical model.
    """
    import keras

    keras.utils.set_random_seed(seed)
    preprocessing = PreprocessingConfig(input_size=input_size)
    model = build_classifier(PHANTOM_CLASSES, input_size, NO_WEIGHTS)
    train_images, train_labels = draw_phantom_set(samples, size=input_size, seed=seed + 1)
    fit_head(
        model,
        to_model_batch(train_images, preprocessing),
        train_labels,
        epochs=epochs,
        on_epoch_end=on_epoch_end,
    )
    validation_images, validation_labels = draw_phantom_set(
        max(40, samples // 4), size=input_size, seed=seed + 2
    )
    threshold, report = validate(
        model,
        to_model_batch(validation_images, preprocessing),
        validation_labels,
        PHANTOM_CLASSES,
        target_sensitivity=target_sensitivity,
    )
    return TrainedClassifier(model, PHANTOM_CLASSES, preprocessing, threshold, report)
