"""The training recipes the service uses by default, in one place.

FROM_FOLDER: `train --data` without ImageNet weights on a 2-core CPU (the best configuration
measured there; docs/benchmarks.md). RETRAIN: the serving model trained further, whole, on
the confirmed labels (the beat trigger, the training-run API). PLACEHOLDER: bootstrap_model's
phantom model.
"""

from dataclasses import dataclass

from ml_core.augmentation import Augmentation
from ml_core.training import TrainingConfig

FROM_FOLDER = TrainingConfig(
    input_size=96,
    epochs=15,
    max_minutes=26.0,
    learning_rate_schedule="cosine",
    augmentation=Augmentation(contrast=0.2, brightness=0.05),
    precision="auto",
)

# Stronger variation for a base meant to hold up on other studies and scanners: larger warps,
# gamma, blur and noise on top of contrast and brightness (docs/model-card.md).
SCANNER_AUGMENTATION = Augmentation(
    rotation_degrees=15.0,
    shift=0.1,
    zoom=0.15,
    contrast=0.25,
    brightness=0.08,
    gamma=0.3,
    blur=1.0,
    noise=0.03,
)

# The whole serving model trained on, warm: the replays (docs/benchmarks.md, replay G) showed
# that a new head on a base trained on the first studies ranks the next studies no better, and
# that continuing the whole model on the newer confirmed labels does. Four epochs fit the
# 10 minutes a run may take on a 2-core CPU.
RETRAIN = TrainingConfig(
    mode="full",
    learning_rate=1e-4,
    learning_rate_schedule="cosine",
    epochs=4,
    max_minutes=9.0,
    patience=4,
    augmentation=Augmentation(contrast=0.2, brightness=0.05),
    precision="auto",
)


@dataclass(frozen=True)
class PlaceholderRecipe:
    input_size: int = 64
    samples: int = 1000
    epochs: int = 40
    seed: int = 0


PLACEHOLDER = PlaceholderRecipe()
