"""Training: three modes on streamed data, early stopping on validation ROC AUC, the decision
threshold chosen on validation data for a target sensitivity."""

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from ml_core.augmentation import Augmentation
from ml_core.batches import load_intensity, make_batches
from ml_core.classifier import NO_WEIGHTS, build_classifier, split_at_features
from ml_core.datasets import LabelledImage, class_counts
from ml_core.decision import NEGATIVE_CLASS, abnormal_scores, choose_threshold, evaluation_report
from ml_core.feature_cache import extract_features
from ml_core.phantoms import PHANTOM_CLASSES, STONE_RADIUS, draw_phantom_set
from ml_core.precision import PRECISIONS, resolve_precision, with_precision
from ml_core.preprocessing import PreprocessingConfig, normalise, to_model_batch
from ml_core.study import StudyRule, study_threshold_from_slices

MODES = ("head", "finetune", "full")
TRAINING_PRECISIONS = PRECISIONS
VGG16_BLOCKS = ("block5", "block4", "block3", "block2", "block1")
EpochCallback = Callable[[int, dict], None]


@dataclass(frozen=True)
class TrainingConfig:
    classes: tuple[str, ...] = ("normal", "stone")
    input_size: int = 96
    base_weights: str = NO_WEIGHTS
    mode: str = "full"
    epochs: int = 40
    batch_size: int = 32
    learning_rate: float = 1e-4
    # "cosine": decays towards 0 over the epochs that fit max_minutes (all `epochs` without a
    # budget), planned from the first epoch's time.
    learning_rate_schedule: str = "constant"
    augmentation: Augmentation = field(default_factory=Augmentation)
    class_weights: bool = True
    patience: int = 6  # epochs without a better validation AUC before stopping
    max_minutes: float = 0.0  # 0: no time budget
    finetune_blocks: int = 1
    target_sensitivity: float = 0.95
    seed: int = 0
    normalisation: str = ""  # empty: "vgg16" for pretrained base weights, else "unit"
    window_width: float = 400.0  # the CT window for DICOM input, in Hounsfield units
    window_level: float = 40.0
    # The arithmetic fit() computes in: "bfloat16" (mixed: float32 weights) runs about 2.8x
    # faster on CPUs with native bfloat16, "auto" picks it there (ml_core.precision); the
    # returned model always computes in float32.
    precision: str = "float32"
    # Targets of 1 - s/2 and s/2 (two classes) instead of 1 and 0: a model that cannot push
    # its scores to 0 and 1 keeps room between them for a threshold (docs/benchmarks.md).
    label_smoothing: float = 0.0

    def __post_init__(self):
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}")
        if NEGATIVE_CLASS not in self.classes:
            raise ValueError(f"classes must include {NEGATIVE_CLASS!r}")
        if self.learning_rate_schedule not in ("constant", "cosine"):
            raise ValueError("learning_rate_schedule must be constant or cosine")
        if self.precision not in TRAINING_PRECISIONS:
            raise ValueError(f"precision must be one of {', '.join(TRAINING_PRECISIONS)}")
        if not 0.0 <= self.label_smoothing < 1.0:
            raise ValueError("label_smoothing must be at least 0 and below 1")

    @property
    def preprocessing(self) -> PreprocessingConfig:
        # ImageNet weights expect ImageNet scaling; a random base trains better from [-1, 1].
        automatic = "unit" if self.base_weights == NO_WEIGHTS else "vgg16"
        return PreprocessingConfig(
            input_size=self.input_size,
            normalisation=self.normalisation or automatic,
            window_width=self.window_width,
            window_level=self.window_level,
        )

    def to_dict(self) -> dict:
        values = asdict(self)
        values["classes"] = list(self.classes)
        return values


@dataclass
class TrainedClassifier:
    model: object
    classes: list[str]
    preprocessing: PreprocessingConfig
    threshold: float
    validation: dict
    history: list[dict] = field(default_factory=list)
    # Per validation image: is it abnormal, and P(abnormal); for ROC plots.
    validation_positive: np.ndarray | None = None
    validation_scores: np.ndarray | None = None
    # The study rule and its threshold (ml_core.study); None: the slice threshold.
    study_rule: StudyRule = field(default_factory=StudyRule)
    study_threshold: float | None = None


def set_trainable(model, mode: str, finetune_blocks: int = 1) -> None:
    """head: only the head learns; finetune: also the top VGG16 blocks; full: everything."""
    open_blocks = {"head": (), "finetune": VGG16_BLOCKS[:finetune_blocks], "full": VGG16_BLOCKS}
    for layer in model.layers:
        if layer.name.startswith("block"):
            layer.trainable = layer.name.split("_")[0] in open_blocks[mode]
        else:
            layer.trainable = True


BatchCallback = Callable[[int, int, int], None]  # (epoch, batch, batches in the epoch)


@dataclass
class FitPlan:
    """What fit() trains and on what: the whole model on streamed images, or only the head
    on features extracted once."""

    trainable: object
    fit_data: dict
    predict_validation: Callable[[object], np.ndarray]


def train(
    config: TrainingConfig,
    train_entries: list[LabelledImage],
    validation_entries: list[LabelledImage],
    *,
    initial_model=None,
    feature_cache_dir: Path | None = None,
    on_epoch_end: EpochCallback | None = None,
    on_batch_end: BatchCallback | None = None,
) -> TrainedClassifier:
    """Train (or, with initial_model, continue training) a classifier on streamed images,
    then choose its threshold on the validation images."""
    import keras

    keras.utils.set_random_seed(config.seed)
    model = prepare_model(config, initial_model)
    # Mixed precision keeps float32 weights: the trained copy's weights are the model's.
    computing = with_precision(model, resolve_precision(config.precision))
    plan = fit_plan(config, computing, train_entries, validation_entries, feature_cache_dir)
    validation_positive = np.array([entry.label != NEGATIVE_CLASS for entry in validation_entries])
    history = fit(
        config,
        plan,
        train_entries,
        validation_positive,
        on_epoch_end=on_epoch_end,
        on_batch_end=on_batch_end,
    )
    if computing is not model:
        model.set_weights(computing.get_weights())
    return calibrate(config, model, train_entries, validation_entries, history)


def prepare_model(config: TrainingConfig, initial_model=None):
    """A new classifier, or the initial one checked against the configuration; the layers
    the mode trains are made trainable."""
    if initial_model is not None and initial_model.input_shape[1] != config.input_size:
        raise ValueError("The initial model's input size differs from the configuration's.")
    model = initial_model or build_classifier(
        list(config.classes), config.input_size, config.base_weights
    )
    set_trainable(model, config.mode, config.finetune_blocks)
    return model


def fit_plan(
    config: TrainingConfig,
    model,
    train_entries: list[LabelledImage],
    validation_entries: list[LabelledImage],
    feature_cache_dir: Path | None,
) -> FitPlan:
    classes = list(config.classes)
    preprocessing = config.preprocessing
    if config.mode == "head":
        # A frozen base gives each image the same features every epoch: extract them once.
        extractor, head = split_at_features(model)
        train_inputs, _ = extract_features(
            extractor, train_entries, preprocessing,
            batch_size=config.batch_size, cache_dir=feature_cache_dir,
        )  # fmt: skip
        validation_inputs, _ = extract_features(
            extractor, validation_entries, preprocessing,
            batch_size=config.batch_size, cache_dir=feature_cache_dir,
        )  # fmt: skip
        labels = np.array([classes.index(entry.label) for entry in train_entries])
        return FitPlan(
            head,
            {"x": train_inputs, "y": labels, "batch_size": config.batch_size},
            lambda trained: np.asarray(trained.predict(validation_inputs, verbose=0)),
        )
    batches = make_batches(
        train_entries,
        classes,
        preprocessing,
        batch_size=config.batch_size,
        augmentation=config.augmentation,
        shuffle=True,
        seed=config.seed,
    )
    return FitPlan(
        model,
        {"x": batches},
        lambda trained: predict_entries(
            trained, validation_entries, preprocessing, config.batch_size
        ),
    )


def fit(
    config: TrainingConfig,
    plan: FitPlan,
    train_entries: list[LabelledImage],
    validation_positive: np.ndarray,
    *,
    on_epoch_end: EpochCallback | None = None,
    on_batch_end: BatchCallback | None = None,
) -> list[dict]:
    """Fit with early stopping on validation ROC AUC; the best epoch's weights are kept.
    Returns the per-epoch history."""
    import keras

    from ml_core.callbacks import AucEarlyStopping, CosineOverEpochsThatFit

    classes = list(config.classes)
    labels = np.array([classes.index(entry.label) for entry in train_entries])
    class_weight = _balanced_class_weights(labels, len(classes)) if config.class_weights else None
    planned = config.learning_rate_schedule == "cosine"
    monitor = AucEarlyStopping(
        plan.predict_validation,
        validation_positive,
        classes,
        patience=config.patience,
        # A planned schedule is the budget: the first epoch sets how many run, and a slower
        # stretch later (a busy machine) lengthens the run instead of cutting the schedule
        # short with the rate still high, so the same command gives the same model.
        max_seconds=0 if planned else config.max_minutes * 60,
        on_epoch_end=on_epoch_end,
    )
    callbacks = [monitor]
    if planned:
        # Before the monitor, so that an epoch's row shows the rate it trained with.
        callbacks.insert(
            0,
            CosineOverEpochsThatFit(config.learning_rate, config.epochs, config.max_minutes * 60),
        )
    steps = math.ceil(len(train_entries) / config.batch_size)
    if on_batch_end is not None:
        epoch = [0]
        callbacks.append(
            keras.callbacks.LambdaCallback(
                on_epoch_begin=lambda index, logs: epoch.__setitem__(0, index + 1),
                on_train_batch_end=lambda batch, logs: on_batch_end(epoch[0], batch + 1, steps),
            )
        )
    plan.trainable.compile(
        optimizer=keras.optimizers.Adam(config.learning_rate),
        loss=training_loss(config.label_smoothing, len(classes)),
    )
    plan.trainable.fit(
        **plan.fit_data,
        epochs=config.epochs,
        class_weight=class_weight,
        callbacks=callbacks,
        verbose=0,
    )
    monitor.restore_best()
    return monitor.history


def calibrate(
    config: TrainingConfig,
    model,
    train_entries: list[LabelledImage],
    validation_entries: list[LabelledImage],
    history: list[dict],
) -> TrainedClassifier:
    """The threshold that reaches the target sensitivity on validation, and the report."""
    classes = list(config.classes)
    probabilities = predict_entries(
        model, validation_entries, config.preprocessing, config.batch_size
    )
    validation_positive = np.array([entry.label != NEGATIVE_CLASS for entry in validation_entries])
    scores = abnormal_scores(probabilities, classes)
    threshold = choose_threshold(validation_positive, scores, config.target_sensitivity)
    validation = evaluation_report(
        [entry.label for entry in validation_entries], probabilities, classes, threshold
    )
    validation["class_counts_train"] = class_counts(train_entries)
    in_order = np.argsort([entry.order for entry in validation_entries], kind="stable")
    rule = StudyRule()
    study_threshold = study_threshold_from_slices(
        validation_positive[in_order], scores[in_order], rule
    )
    validation["study_threshold"] = study_threshold
    return TrainedClassifier(
        model,
        classes,
        config.preprocessing,
        threshold,
        validation,
        history,
        validation_positive,
        scores,
        rule,
        study_threshold,
    )


def predict_entries(
    model, entries: list[LabelledImage], preprocessing: PreprocessingConfig, batch_size: int = 32
) -> np.ndarray:
    """(n, classes) probabilities for labelled images, streamed from disk."""
    outputs = [np.zeros((0, model.output_shape[-1]))]
    for start in range(0, len(entries), batch_size):
        intensities = [
            load_intensity(e.path, preprocessing) for e in entries[start : start + batch_size]
        ]
        outputs.append(
            np.asarray(model.predict_on_batch(normalise(np.stack(intensities), preprocessing)))
        )
    return np.concatenate(outputs)


def evaluate(
    model,
    entries: list[LabelledImage],
    classes: list[str],
    preprocessing: PreprocessingConfig,
    threshold: float,
    *,
    feature_cache_dir: Path | None = None,
) -> dict:
    """Sensitivity-first report of a model on labelled images at its stored threshold."""
    probabilities = predict_through_cache(model, entries, preprocessing, feature_cache_dir)
    return evaluation_report([entry.label for entry in entries], probabilities, classes, threshold)


def predict_through_cache(
    model,
    entries: list[LabelledImage],
    preprocessing: PreprocessingConfig,
    feature_cache_dir: Path | None,
) -> np.ndarray:
    """(n, classes) probabilities. With a feature cache, images whose features under this
    model's base are cached (a head retrained on an unchanged base) only go through the head,
    and the others' features are cached for the next pass."""
    if feature_cache_dir is None:
        return predict_entries(model, entries, preprocessing)
    extractor, head = split_at_features(model)
    features, _ = extract_features(
        extractor, entries, preprocessing, batch_size=32, cache_dir=feature_cache_dir
    )
    return np.asarray(head.predict(features, verbose=0))


def training_loss(label_smoothing: float, class_count: int):
    """Cross-entropy on class indices, with labels smoothed when asked."""
    if not label_smoothing:
        return "sparse_categorical_crossentropy"
    import keras

    def smoothed_crossentropy(class_indices, probabilities):
        targets = keras.ops.one_hot(
            keras.ops.cast(keras.ops.reshape(class_indices, (-1,)), "int32"), class_count
        )
        return keras.losses.categorical_crossentropy(
            targets, probabilities, label_smoothing=label_smoothing
        )

    return smoothed_crossentropy


def _balanced_class_weights(labels: np.ndarray, class_count: int) -> dict[int, float]:
    counts = np.bincount(labels, minlength=class_count)
    return {
        index: float(len(labels) / (class_count * count)) if count else 0.0
        for index, count in enumerate(counts)
    }


def train_on_phantoms(
    *,
    input_size: int,
    samples: int,
    epochs: int,
    target_sensitivity: float,
    seed: int = 0,
    on_epoch_end: EpochCallback | None = None,
    stone_radius: tuple[float, float] = STONE_RADIUS,
) -> TrainedClassifier:
    """A placeholder classifier from synthetic phantoms: random VGG16 base, trained head.

    It lets a fresh install answer end to end; it is not a medical model.
    """
    import keras

    keras.utils.set_random_seed(seed)
    preprocessing = PreprocessingConfig(input_size=input_size)
    model = build_classifier(PHANTOM_CLASSES, input_size, NO_WEIGHTS)
    extractor, head = split_at_features(model)
    images, labels = draw_phantom_set(
        samples, size=input_size, seed=seed + 1, stone_radius=stone_radius
    )
    features = extractor.predict(to_model_batch(images, preprocessing), verbose=0)
    head.compile(optimizer=keras.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy")
    callbacks = []
    if on_epoch_end is not None:
        callbacks.append(
            keras.callbacks.LambdaCallback(
                on_epoch_end=lambda epoch, logs: on_epoch_end(epoch + 1, dict(logs or {}))
            )
        )
    head.fit(features, labels, epochs=epochs, batch_size=32, verbose=0, callbacks=callbacks)
    validation_images, validation_labels = draw_phantom_set(
        max(40, samples // 4), size=input_size, seed=seed + 2, stone_radius=stone_radius
    )
    probabilities = np.asarray(
        model.predict(to_model_batch(validation_images, preprocessing), verbose=0)
    )
    is_positive = validation_labels == PHANTOM_CLASSES.index("stone")
    scores = abnormal_scores(probabilities, PHANTOM_CLASSES)
    threshold = choose_threshold(is_positive, scores, target_sensitivity)
    labels_named = [PHANTOM_CLASSES[label] for label in validation_labels]
    validation = evaluation_report(labels_named, probabilities, PHANTOM_CLASSES, threshold)
    rule = StudyRule()
    return TrainedClassifier(
        model,
        PHANTOM_CLASSES,
        preprocessing,
        threshold,
        validation,
        study_rule=rule,
        study_threshold=study_threshold_from_slices(is_positive, scores, rule),
    )
