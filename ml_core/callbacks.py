"""Keras callbacks for training; imported only where Keras already is."""

import math
import time
from collections.abc import Callable

import keras
import numpy as np

from ml_core.decision import abnormal_scores, roc_auc


class AucEarlyStopping(keras.callbacks.Callback):
    """Validation ROC AUC after each epoch; keeps the best weights (the latest of tied ones);
    stops after `patience` epochs that are worse than the best, or once `max_seconds` (0:
    none) have passed."""

    def __init__(
        self,
        predict_validation: Callable[[object], np.ndarray],
        is_positive: np.ndarray,
        classes: list[str],
        *,
        patience: int,
        max_seconds: float,
        on_epoch_end: Callable[[int, dict], None] | None,
    ):
        super().__init__()
        self.predict_validation = predict_validation
        self.is_positive, self.classes = is_positive, classes
        self.patience, self.max_seconds, self.report = patience, max_seconds, on_epoch_end
        self.best_auc, self.best_weights, self.stale = -1.0, None, 0
        self.history: list[dict] = []
        self.started = time.monotonic()

    def on_epoch_end(self, epoch, logs=None):
        scores = abnormal_scores(self.predict_validation(self.model), self.classes)
        auc = roc_auc(self.is_positive, scores) or 0.0
        elapsed = time.monotonic() - self.started
        row = {
            "epoch": epoch + 1,
            "loss": float((logs or {}).get("loss", 0.0)),
            "val_auc": auc,
            "seconds": elapsed,
            "learning_rate": float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate)),
        }
        self.history.append(row)
        # A tie counts as progress and keeps the later weights: a validation block of slices
        # next to the training data saturates at 1.0 within an epoch or two, and the best of
        # the tied epochs is the one trained longest on the schedule.
        if auc >= self.best_auc:
            self.best_auc, self.best_weights, self.stale = auc, self.model.get_weights(), 0
        else:
            self.stale += 1
        out_of_time = self.max_seconds and elapsed >= self.max_seconds
        if self.stale >= self.patience or out_of_time:
            self.model.stop_training = True
        if self.report:
            self.report(epoch + 1, row)

    def restore_best(self) -> None:
        if self.best_weights is not None:
            self.model.set_weights(self.best_weights)


def epochs_that_fit(first_epoch_seconds: float, budget_seconds: float, epochs: int) -> int:
    """How many epochs a time budget holds, judged by the first (which also pays for tracing
    and warm-up, so the plan errs short); no budget: all of them."""
    if not budget_seconds or first_epoch_seconds <= 0:
        return epochs
    return max(1, min(epochs, int(budget_seconds // first_epoch_seconds)))


class CosineOverEpochsThatFit(keras.callbacks.Callback):
    """Cosine decay of the learning rate, per epoch, over the epochs that fit the time budget:
    the first epoch is timed and the rest planned from it, so a slower machine runs fewer
    epochs of the same schedule (ending near zero) instead of being cut off with the rate
    still high. Training stops after the planned epochs."""

    def __init__(self, base_rate: float, epochs: int, budget_seconds: float):
        super().__init__()
        self.base_rate, self.epochs, self.budget_seconds = base_rate, epochs, budget_seconds
        self.planned = epochs
        self.started = 0.0

    def rate(self, epoch: int) -> float:
        return self.base_rate * 0.5 * (1 + math.cos(math.pi * (epoch + 0.5) / self.planned))

    def on_epoch_begin(self, epoch, logs=None):
        if epoch == 0:
            self.started = time.monotonic()
        self.model.optimizer.learning_rate = self.rate(epoch)

    def on_epoch_end(self, epoch, logs=None):
        if epoch == 0:
            self.planned = epochs_that_fit(
                time.monotonic() - self.started, self.budget_seconds, self.epochs
            )
        if epoch + 1 >= self.planned:
            self.model.stop_training = True
