"""ml_core training on streamed images: modes, splits, feature cache, evaluation."""

from dataclasses import replace

import numpy as np
import pytest

from ml_core.augmentation import NO_AUGMENTATION, Augmentation
from ml_core.classifier import build_classifier
from ml_core.datasets import (
    LabelledImage,
    block_split,
    folder_manifest,
    manifest_digest,
    manifest_from_json,
    manifest_to_json,
    without_neighbours,
)
from ml_core.feature_cache import extract_features
from ml_core.training import TrainingConfig, evaluate, set_trainable, train, training_loss
from tests.images import write_phantom_folder

TINY = {"input_size": 32, "batch_size": 16, "epochs": 2, "augmentation": NO_AUGMENTATION}


@pytest.fixture(scope="module")
def phantom_folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("phantoms")
    write_phantom_folder(root, per_class=30, size=48)
    return root


def test_folder_manifest_orders_by_the_number_in_the_file_name(phantom_folder):
    entries = folder_manifest(phantom_folder, ["normal", "stone"])

    assert len(entries) == 60
    stones = [entry for entry in entries if entry.label == "stone"]
    assert [entry.path.rsplit("(", 1)[1] for entry in stones[:3]] == ["1).png", "2).png", "3).png"]
    assert [entry.order for entry in stones] == list(range(30))
    assert all(len(entry.sha256) == 64 for entry in entries)
    assert manifest_from_json(manifest_to_json(entries)) == entries
    assert manifest_digest(entries) == manifest_digest(list(entries))


def test_block_split_holds_out_the_last_block_with_a_gap_and_keeps_studies_whole():
    entries = [LabelledImage(f"n{i}", "normal", i) for i in range(20)]
    entries += [LabelledImage(f"s{i}", "stone", i, group=f"study{i // 4}") for i in range(20)]

    kept, held = block_split(entries, fraction=0.2, gap=2)

    held_normal = sorted(entry.order for entry in held if entry.label == "normal")
    kept_normal = sorted(entry.order for entry in kept if entry.label == "normal")
    assert held_normal == [16, 17, 18, 19]
    assert kept_normal == list(range(14))  # 14 and 15 are the gap
    held_studies = {entry.group for entry in held if entry.label == "stone"}
    assert held_studies == {"study4"}
    assert not any(entry.group in held_studies for entry in kept)


def test_without_neighbours_leaves_out_a_held_set_with_its_gap_on_both_sides_and_its_studies():
    entries = [LabelledImage(f"n{i}", "normal", i, sha256=f"n{i}") for i in range(20)]
    entries += [
        LabelledImage(f"s{i}", "stone", i, group=f"study{i // 4}", sha256=f"s{i}")
        for i in range(20)
    ]
    held_out = {"n8", "n9", "n10", "s9"}

    kept = without_neighbours(entries, held_out, gap=2)

    assert [entry.order for entry in kept if entry.label == "normal"] == [
        *range(6),
        *range(13, 20),
    ]
    # s9's gap reaches s7 and s11, its study is s8 to s11: the gap counts from the held slice.
    assert [entry.order for entry in kept if entry.label == "stone"] == [
        *range(7),
        *range(12, 20),
    ]
    assert kept == [entry for entry in entries if entry in kept]  # in the order given


def test_augmentation_warps_training_images_and_can_be_off():
    image = np.zeros((32, 32), np.float32)
    image[8:16, 8:16] = 1.0
    rng = np.random.default_rng(0)

    warped = Augmentation(rotation_degrees=20, shift=0.1, zoom=0.1).apply(image, rng)
    grey = np.full((32, 32), 0.5, np.float32)
    jittered = Augmentation(0, 0, 0, False, False, contrast=0.3, brightness=0.1).apply(grey, rng)

    assert warped.shape == image.shape
    assert not np.allclose(warped, image)
    assert np.ptp(jittered) == 0  # intensity jitter moves every pixel alike
    assert jittered[0, 0] != 0.5
    assert NO_AUGMENTATION.apply(image, rng) is image


def test_scanner_augmentation_changes_gamma_sharpness_and_noise_within_range():
    image = np.zeros((32, 32), np.float32)
    image[8:24, 8:24] = 0.5
    rng = np.random.default_rng(1)
    still = {"rotation_degrees": 0, "shift": 0, "zoom": 0, "horizontal_flip": False}

    gamma = Augmentation(**still, gamma=0.5).apply(image, rng)
    blurred = max(
        (Augmentation(**still, blur=2.0).apply(image, rng) for _ in range(5)),
        key=lambda candidate: candidate[7, 7],
    )  # sigma is drawn from [0, 2]: the widest of five
    noisy = Augmentation(**still, noise=0.05).apply(image, rng)

    assert set(np.unique(gamma)) == {0.0, gamma[16, 16]}
    assert gamma[16, 16] != 0.5
    assert blurred[7, 7] > 0.0  # the square's edge is softened
    assert blurred[8, 8] < 0.5
    assert noisy[8:24, 8:24].std() > 0.0
    assert noisy.min() >= 0.0
    assert noisy.max() <= 1.0


@pytest.mark.parametrize(
    ("mode", "trainable_blocks"),
    [("head", set()), ("finetune", {"block5"}), ("full", {f"block{i}" for i in range(1, 6)})],
)
def test_modes_choose_which_vgg16_blocks_learn(mode, trainable_blocks):
    model = build_classifier(["normal", "stone"], 32, "none")

    set_trainable(model, mode)

    learning = {
        layer.name.split("_")[0]
        for layer in model.layers
        if layer.name.startswith("block") and layer.trainable and layer.weights
    }
    assert learning == trainable_blocks
    assert model.get_layer("probabilities").trainable


def test_full_training_streams_reports_each_epoch_and_chooses_the_threshold(phantom_folder):
    entries = folder_manifest(phantom_folder, ["normal", "stone"])
    kept, validation = block_split(entries, fraction=0.25, gap=1)
    epochs = []

    trained = train(
        TrainingConfig(mode="full", learning_rate_schedule="cosine", **TINY),
        kept,
        validation,
        on_epoch_end=lambda epoch, row: epochs.append((epoch, set(row))),
    )

    assert [epoch for epoch, _ in epochs] == [1, 2]
    assert epochs[0][1] >= {"loss", "val_auc", "seconds"}
    assert trained.preprocessing.normalisation == "unit"  # no pretrained weights
    assert trained.validation["sensitivity"] >= 0.95
    assert trained.validation["threshold"] == trained.threshold
    assert trained.validation["n"] == {"normal": 8, "stone": 8}


def test_bfloat16_training_changes_the_weights_and_returns_a_float32_model(phantom_folder):
    entries = folder_manifest(phantom_folder, ["normal", "stone"])
    kept, validation = block_split(entries, fraction=0.25, gap=1)
    config = TrainingConfig(mode="full", precision="bfloat16", **TINY)
    untrained = build_classifier(["normal", "stone"], 32, "none")
    before = [weights.copy() for weights in untrained.get_weights()]

    trained = train(config, kept, validation, initial_model=untrained)

    assert trained.model is untrained  # the trained weights were copied back
    assert {layer.compute_dtype for layer in trained.model.layers} == {"float32"}
    after = trained.model.get_weights()
    assert not np.array_equal(before[0], after[0])  # block1_conv1 learned
    assert trained.validation["sensitivity"] >= 0.95
    with pytest.raises(ValueError, match="precision must be one of"):
        TrainingConfig(precision="int8")


def test_head_training_reuses_cached_features(phantom_folder, tmp_path):
    entries = folder_manifest(phantom_folder, ["normal", "stone"])
    kept, validation = block_split(entries, fraction=0.25, gap=1)
    model = build_classifier(["normal", "stone"], 32, "none")
    from ml_core.classifier import split_at_features

    extractor, _ = split_at_features(model)
    config = TrainingConfig(mode="head", learning_rate=1e-3, **TINY)

    _, computed_first = extract_features(
        extractor, kept, config.preprocessing, batch_size=16, cache_dir=tmp_path
    )
    trained = train(config, kept, validation, initial_model=model, feature_cache_dir=tmp_path)
    _, computed_again = extract_features(
        extractor, kept + validation, config.preprocessing, batch_size=16, cache_dir=tmp_path
    )

    assert computed_first == len(kept)
    assert computed_again == 0  # the head's training changed no base weight
    assert trained.model is model
    report = evaluate(
        trained.model, validation, ["normal", "stone"], trained.preprocessing, trained.threshold
    )
    assert report["n"] == {"normal": 8, "stone": 8}
    assert sum(map(sum, report["confusion_matrix"]["rows"])) == 16
    # Through the cache, the images are not even read (these paths do not exist): the same
    # report, to rounding.
    unreadable = [replace(entry, path=str(tmp_path / "gone.png")) for entry in validation]
    cached = evaluate(
        trained.model, unreadable, ["normal", "stone"], trained.preprocessing,
        trained.threshold, feature_cache_dir=tmp_path,
    )  # fmt: skip
    assert cached["auc"] == pytest.approx(report["auc"], abs=1e-6)
    assert cached["confusion_matrix"] == report["confusion_matrix"]


def test_features_cached_in_bfloat16_are_float32_and_kept_apart_from_float32_ones(
    phantom_folder, tmp_path
):
    from ml_core.classifier import split_at_features
    from ml_core.precision import with_precision

    entries = folder_manifest(phantom_folder, ["normal", "stone"])[:8]
    model = build_classifier(["normal", "stone"], 32, "none")
    preprocessing = TrainingConfig(**TINY).preprocessing
    reduced, _ = split_at_features(with_precision(model, "bfloat16"))
    full, _ = split_at_features(model)

    features, computed = extract_features(
        reduced, entries, preprocessing, batch_size=4, cache_dir=tmp_path
    )
    again, reused = extract_features(
        reduced, entries, preprocessing, batch_size=4, cache_dir=tmp_path
    )
    exact, computed_in_float32 = extract_features(
        full, entries, preprocessing, batch_size=4, cache_dir=tmp_path
    )

    assert (computed, reused, computed_in_float32) == (8, 0, 8)
    assert features.dtype == again.dtype == exact.dtype == np.float32
    np.testing.assert_array_equal(features, again)
    np.testing.assert_allclose(features, exact, atol=0.1 * np.abs(exact).max())


def test_early_stopping_waits_patience_epochs_and_restores_the_best_weights():
    import keras

    from ml_core.callbacks import AucEarlyStopping

    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2, activation="softmax")])
    model.compile(optimizer=keras.optimizers.SGD(0.5), loss="sparse_categorical_crossentropy")
    right = np.array([[0.6, 0.4], [0.4, 0.6]])  # ROC AUC 1.0
    wrong = right[::-1]  # ROC AUC 0.0
    epochs = []
    monitor = AucEarlyStopping(
        lambda trained: right if not epochs else wrong,
        np.array([False, True]),
        ["normal", "stone"],
        patience=2,
        max_seconds=0,
        on_epoch_end=lambda epoch, row: epochs.append(epoch),
    )
    data = np.random.default_rng(0).normal(size=(8, 3))

    model.fit(data, np.arange(8) % 2, epochs=10, callbacks=[monitor], verbose=0)
    first_epoch_weights = monitor.best_weights
    monitor.restore_best()

    assert epochs == [1, 2, 3]
    for restored, best in zip(model.get_weights(), first_epoch_weights, strict=True):
        np.testing.assert_array_equal(restored, best)


def test_tied_epochs_keep_the_later_weights_and_do_not_stop_training():
    import keras

    from ml_core.callbacks import AucEarlyStopping

    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2, activation="softmax")])
    model.compile(optimizer=keras.optimizers.SGD(0.5), loss="sparse_categorical_crossentropy")
    saturated = np.array([[0.6, 0.4], [0.4, 0.6]])  # ROC AUC 1.0 after every epoch
    monitor = AucEarlyStopping(
        lambda trained: saturated,
        np.array([False, True]),
        ["normal", "stone"],
        patience=2,
        max_seconds=0,
        on_epoch_end=None,
    )
    data = np.random.default_rng(0).normal(size=(8, 3))

    model.fit(data, np.arange(8) % 2, epochs=5, callbacks=[monitor], verbose=0)
    last_epoch_weights = model.get_weights()
    monitor.restore_best()

    assert len(monitor.history) == 5
    for restored, last in zip(model.get_weights(), last_epoch_weights, strict=True):
        np.testing.assert_array_equal(restored, last)


def test_training_stops_when_its_time_budget_is_spent(phantom_folder):
    entries = folder_manifest(phantom_folder, ["normal", "stone"])
    kept, validation = block_split(entries, fraction=0.25, gap=1)
    config = TrainingConfig(mode="head", max_minutes=1e-6, **{**TINY, "epochs": 10})
    epochs = []

    train(config, kept, validation, on_epoch_end=lambda epoch, row: epochs.append(epoch))

    assert epochs == [1]


def test_a_budget_holds_the_epochs_its_first_epoch_says_fit():
    from ml_core.callbacks import epochs_that_fit

    assert epochs_that_fit(60.0, 26 * 60, 15) == 15  # a fast machine: every epoch
    assert epochs_that_fit(240.0, 26 * 60, 15) == 6  # a slow one: the schedule is shortened
    assert epochs_that_fit(4000.0, 26 * 60, 15) == 1
    assert epochs_that_fit(240.0, 0, 15) == 15  # no budget


def test_the_cosine_schedule_runs_its_course_over_the_epochs_that_fit(phantom_folder):
    entries = folder_manifest(phantom_folder, ["normal", "stone"])
    kept, validation = block_split(entries, fraction=0.25, gap=1)
    base = 1e-3
    config = TrainingConfig(
        mode="head", learning_rate=base, learning_rate_schedule="cosine", patience=50,
        **{**TINY, "epochs": 4},
    )  # fmt: skip
    budgeted = TrainingConfig(**{**config.__dict__, "epochs": 10, "max_minutes": 1e-6})

    rates = [row["learning_rate"] for row in train(config, kept, validation).history]
    short = [row["learning_rate"] for row in train(budgeted, kept, validation).history]

    assert len(rates) == 4
    assert rates == sorted(rates, reverse=True)
    assert rates[0] == pytest.approx(base * 0.5 * (1 + np.cos(np.pi / 8)), rel=1e-4)
    assert rates[-1] < 0.05 * base  # decayed, not cut off with the rate still high
    assert len(short) == 1  # a budget its first epoch overruns holds one epoch


def test_a_planned_schedule_is_not_cut_short_when_later_epochs_run_slower(
    phantom_folder, monkeypatch
):
    """The first epoch takes 10 s of a 60 s budget, the next ones 100 s each (a busy
    machine): all planned epochs run, the last with the rate decayed."""
    from types import SimpleNamespace

    import ml_core.callbacks

    readings = iter([0.0, 0.0, 10.0, 10.0])
    later = [10.0]

    def monotonic() -> float:
        try:
            return next(readings)
        except StopIteration:
            later[0] += 100.0
            return later[0]

    monkeypatch.setattr(ml_core.callbacks, "time", SimpleNamespace(monotonic=monotonic))
    entries = folder_manifest(phantom_folder, ["normal", "stone"])
    kept, validation = block_split(entries, fraction=0.25, gap=1)
    config = TrainingConfig(
        mode="head", learning_rate=1e-3, learning_rate_schedule="cosine", patience=50,
        max_minutes=1.0, **{**TINY, "epochs": 4},
    )  # fmt: skip

    rates = [row["learning_rate"] for row in train(config, kept, validation).history]

    assert len(rates) == 4
    assert rates[-1] < 0.05 * 1e-3


@pytest.mark.parametrize("labels", [["stone", "stone"], ["normal", "normal"]])
def test_report_plots_of_a_one_class_block_say_so_instead_of_failing(labels):
    from ml_core import plots
    from ml_core.decision import evaluation_report

    probabilities = np.array([[0.3, 0.7], [0.6, 0.4]])
    report = evaluation_report(labels, probabilities, ["normal", "stone"], threshold=0.5)
    is_positive = np.array([label != "normal" for label in labels])

    roc = plots.roc_png(is_positive, probabilities[:, 1], report)
    confusion = plots.confusion_png(report)

    assert report["auc"] is None
    assert roc.startswith(b"\x89PNG")
    assert confusion.startswith(b"\x89PNG")


def test_smoothed_labels_put_the_best_score_below_one_and_the_model_still_saves(
    phantom_folder, tmp_path
):
    import keras

    loss = training_loss(0.2, 2)  # targets 0.9 and 0.1
    stone = np.array([1])

    def at(score: float) -> float:
        return float(keras.ops.convert_to_numpy(loss(stone, np.array([[1 - score, score]])))[0])

    assert at(0.9) < at(0.99) < at(0.9999)  # confidence past the target costs
    assert at(0.9) < at(0.5)
    assert training_loss(0.0, 2) == "sparse_categorical_crossentropy"
    with pytest.raises(ValueError, match="label_smoothing"):
        TrainingConfig(label_smoothing=1.0)

    entries = folder_manifest(phantom_folder, ["normal", "stone"])
    kept, validation = block_split(entries, fraction=0.25, gap=1)
    trained = train(TrainingConfig(mode="full", label_smoothing=0.2, **TINY), kept, validation)
    trained.model.save(tmp_path / "smoothed.keras")
    keras.models.load_model(tmp_path / "smoothed.keras", compile=False)
