"""The classifier, predictor, decision rule and phantom training, without Django."""

import numpy as np
import pytest

from ml_core.classifier import BaseWeightsUnavailable, build_classifier, split_at_features
from ml_core.decision import abnormal_scores, binary_report, choose_threshold, decide, roc_auc
from ml_core.phantoms import draw_phantom_set
from ml_core.predictor import Predictor
from ml_core.preprocessing import PreprocessingConfig, to_model_batch
from ml_core.training import train_on_phantoms

CLASSES = ["normal", "stone"]
READER_STONE_RADIUS = (0.06, 0.08)  # 4 to 5 px at 64 px


@pytest.fixture(scope="module")
def tiny_classifier():
    import keras

    keras.utils.set_random_seed(1)
    return build_classifier(CLASSES, 32, "none")


def test_classifier_outputs_a_probability_per_class(tiny_classifier):
    batch = np.random.default_rng(0).normal(size=(3, 32, 32, 3)).astype(np.float32)

    probabilities = np.asarray(tiny_classifier.predict_on_batch(batch))

    assert probabilities.shape == (3, 2)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)
    assert tiny_classifier.get_layer("block5_conv3") is not None  # the block the check randomises


def test_more_classes_are_configuration():
    model = build_classifier(["normal", "stone", "cyst", "tumor"], 32, "none")

    assert model.output_shape == (None, 4)


def test_base_weights_load_from_a_local_file(tmp_path):
    import keras

    keras.utils.set_random_seed(7)
    base = keras.applications.VGG16(include_top=False, weights=None, input_shape=(32, 32, 3))
    weights_file = tmp_path / "vgg16_notop.weights.h5"
    base.save_weights(weights_file)

    model = build_classifier(CLASSES, 32, str(weights_file))

    np.testing.assert_array_equal(
        model.get_layer("block1_conv1").get_weights()[0],
        base.get_layer("block1_conv1").get_weights()[0],
    )


def test_unknown_base_weights_name_the_alternatives():
    with pytest.raises(BaseWeightsUnavailable, match="'imagenet', 'none' or a local"):
        build_classifier(CLASSES, 32, "/no/such/weights.h5")


def test_imagenet_download_failure_names_the_offline_alternatives(monkeypatch, tmp_path):
    import keras

    def unreachable(*args, **kwargs):
        raise OSError("network unreachable")

    # The real download path, with the network taken away.
    monkeypatch.setattr(keras.utils, "get_file", unreachable)
    monkeypatch.setattr("keras.src.applications.vgg16.file_utils.get_file", unreachable)

    with pytest.raises(BaseWeightsUnavailable, match="base weights 'none' or the path"):
        build_classifier(CLASSES, 32, "imagenet")


def test_inputs_below_vgg16_minimum_are_refused():
    with pytest.raises(ValueError, match="at least 32"):
        build_classifier(CLASSES, 16, "none")


def test_split_at_features_shares_weights_with_the_classifier(tiny_classifier):
    batch = np.random.default_rng(1).normal(size=(2, 32, 32, 3)).astype(np.float32)
    extractor, head = split_at_features(tiny_classifier)

    through_parts = head.predict_on_batch(extractor.predict_on_batch(batch))

    np.testing.assert_allclose(
        through_parts, tiny_classifier.predict_on_batch(batch), rtol=1e-5, atol=1e-6
    )


def test_predictor_round_trips_a_saved_model_and_batches(tiny_classifier, tmp_path):
    path = tmp_path / "model.keras"
    tiny_classifier.save(path)
    batch = np.random.default_rng(2).normal(size=(5, 32, 32, 3)).astype(np.float32)

    predictor = Predictor.load(str(path), max_batch_size=2)

    np.testing.assert_allclose(
        predictor.predict(batch), tiny_classifier.predict_on_batch(batch), rtol=1e-5, atol=1e-6
    )


def test_decision_uses_the_threshold_on_p_abnormal():
    classes = ["normal", "stone", "cyst"]

    assert decide([0.7, 0.2, 0.1], classes, threshold=0.25) == "stone"
    assert decide([0.7, 0.1, 0.2], classes, threshold=0.25) == "cyst"
    assert decide([0.7, 0.2, 0.1], classes, threshold=0.35) == "normal"
    np.testing.assert_allclose(abnormal_scores(np.array([[0.7, 0.2, 0.1]]), classes), [0.3])


def test_threshold_reaches_the_target_sensitivity_halfway_to_the_normals_below():
    is_positive = np.array([1] * 20 + [0] * 5, dtype=bool)
    scores = np.concatenate([np.linspace(0.05, 1.0, 20), [0.02], np.full(4, 0.5)])

    threshold = choose_threshold(is_positive, scores, target_sensitivity=0.95)
    report = binary_report(is_positive, scores, threshold)

    # 19 of 20 stones score 0.1 or more; the highest normal below that scores 0.02.
    assert threshold == pytest.approx((0.1 + 0.02) / 2)
    assert report["sensitivity"] == 0.95
    assert report["confusion"] == {
        "true_positive": 19,
        "false_negative": 1,
        "true_negative": 1,
        "false_positive": 4,
    }


def test_a_cleanly_separated_block_gets_a_threshold_between_the_classes_not_on_the_stones():
    is_positive = np.array([1] * 20 + [0] * 20, dtype=bool)
    scores = np.concatenate([np.ones(20), np.linspace(0.0, 0.3, 20)])

    threshold = choose_threshold(is_positive, scores, target_sensitivity=0.95)

    assert threshold == pytest.approx(0.65)
    assert binary_report(is_positive, scores, threshold)["specificity"] == 1.0


def test_roc_auc_counts_ties_as_half():
    assert roc_auc([0, 0, 1, 1], [0.1, 0.2, 0.8, 0.9]) == 1.0
    assert roc_auc([0, 0, 1, 1], [0.9, 0.8, 0.2, 0.1]) == 0.0
    assert roc_auc([0, 1], [0.5, 0.5]) == 0.5
    assert roc_auc([0, 1, 0, 1], [0.1, 0.3, 0.35, 0.8]) == 0.75
    assert roc_auc([1, 1], [0.1, 0.2]) is None


def test_phantoms_are_reproducible_and_stones_are_bright_foci():
    first, labels = draw_phantom_set(20, size=64, seed=3)
    second, _ = draw_phantom_set(20, size=64, seed=3)

    np.testing.assert_array_equal(np.stack(first), np.stack(second))
    assert sorted(set(labels.tolist())) == [0, 1]
    stone_peaks = [image.max() for image, label in zip(first, labels, strict=True) if label == 1]
    normal_peaks = [image.max() for image, label in zip(first, labels, strict=True) if label == 0]
    assert min(stone_peaks) > max(normal_peaks)


def test_training_on_phantoms_learns_and_reports_sensitivity_first():
    epochs_seen = []

    trained = train_on_phantoms(
        input_size=48,
        samples=160,
        epochs=15,
        target_sensitivity=0.9,
        on_epoch_end=lambda epoch, logs: epochs_seen.append(epoch),
    )

    assert epochs_seen == list(range(1, 16))
    report = trained.validation
    assert report["sensitivity"] >= 0.9
    assert report["auc"] > 0.75  # a random model scores about 0.5
    assert report["threshold"] == trained.threshold
    images, _ = draw_phantom_set(4, size=48, seed=9)
    batch = to_model_batch(images, PreprocessingConfig(input_size=48))
    assert np.asarray(trained.model.predict_on_batch(batch)).shape == (4, 2)


@pytest.fixture(scope="module")
def phantom_reader():
    """A tiny model trained on phantoms with stones large enough for it to learn them well."""
    return train_on_phantoms(
        input_size=64,
        samples=400,
        epochs=30,
        target_sensitivity=0.95,
        stone_radius=READER_STONE_RADIUS,
    )


def phantom_with_stone_at(row: int, col: int, *, seed: int = 42) -> np.ndarray:
    """A normal phantom with a stone (a bright disc of radius 4 px) put at (row, col)."""
    from ml_core.phantoms import draw_phantom

    image = draw_phantom(np.random.default_rng(seed), size=64, with_stone=False)
    rows, cols = np.mgrid[0:64, 0:64]
    image[(rows - row) ** 2 + (cols - col) ** 2 <= 16] = 0.95
    return image


def test_the_evidence_map_follows_a_stone_moved_across_a_phantom(phantom_reader):
    from ml_core.evidence import METHOD, Occlusion, overlay_png

    places = [(34, 19), (36, 45), (30, 22)]  # in the left kidney, the right, the left again
    batch = to_model_batch(
        [phantom_with_stone_at(*place) for place in places], phantom_reader.preprocessing
    )

    explainer = Occlusion(phantom_reader.model, phantom_reader.classes)
    probabilities, maps = explainer(batch)

    assert explainer.method == METHOD
    np.testing.assert_allclose(
        probabilities, phantom_reader.model.predict_on_batch(batch), rtol=1e-4, atol=1e-5
    )
    assert abnormal_scores(probabilities, phantom_reader.classes).min() > 0.5
    assert maps.shape == (3, 64, 64)
    assert maps.min() >= 0.0
    assert maps.max() == pytest.approx(1.0)
    for (row, col), evidence in zip(places, maps, strict=True):
        peak_row, peak_col = np.unravel_index(np.argmax(evidence), evidence.shape)
        assert abs(peak_row - row) <= 4
        assert abs(peak_col - col) <= 4
    png = overlay_png(maps[0], 100, 80)
    import io

    from PIL import Image

    overlay = Image.open(io.BytesIO(png))
    assert overlay.mode == "RGBA"
    assert overlay.size == (100, 80)


def test_the_evidence_map_changes_when_the_top_block_is_randomised(phantom_reader):
    from ml_core.evidence import Occlusion, randomised_layers, rank_correlation

    batch = to_model_batch(
        [phantom_with_stone_at(34, 19, seed=seed) for seed in range(4)],
        phantom_reader.preprocessing,
    )
    _, maps = Occlusion(phantom_reader.model, phantom_reader.classes)(batch)
    randomised = randomised_layers(phantom_reader.model)
    _, random_maps = Occlusion(randomised, phantom_reader.classes)(batch)
    _, same_maps = Occlusion(phantom_reader.model, phantom_reader.classes)(batch)

    assert np.mean([rank_correlation(a, b) for a, b in zip(maps, same_maps, strict=True)]) > 0.99
    assert np.mean([rank_correlation(a, b) for a, b in zip(maps, random_maps, strict=True)]) < 0.5


def test_randomising_the_head_redraws_its_dense_layers_and_keeps_the_rest(phantom_reader):
    from ml_core.evidence import randomised_layers

    model = phantom_reader.model
    randomised = randomised_layers(model, ("probabilities", "head_dense"))

    for layer, copy in zip(model.layers, randomised.layers, strict=True):
        before, after = layer.get_weights(), copy.get_weights()
        redrawn = layer.name in ("probabilities", "head_dense")
        kept = all(np.array_equal(b, a) for b, a in zip(before, after, strict=True))
        assert kept != redrawn, layer.name


def test_maps_that_share_only_a_flat_area_are_not_ranked_alike():
    from ml_core.evidence import rank_correlation

    first, second = np.zeros((16, 16)), np.zeros((16, 16))
    first[2, 3], second[12, 9] = 1.0, 1.0

    assert rank_correlation(first, second) < 0
    assert rank_correlation(first, first * 3) == pytest.approx(1.0)


def test_a_slice_no_region_of_which_carries_the_score_has_an_empty_map(phantom_reader):
    from ml_core.evidence import Occlusion

    uniform = np.full((1, 64, 64, 3), 0.2, dtype=np.float32)  # blanking any patch changes nothing
    stone = to_model_batch([phantom_with_stone_at(34, 19)], phantom_reader.preprocessing)

    _, maps = Occlusion(phantom_reader.model, phantom_reader.classes)(
        np.concatenate([uniform, stone])
    )

    assert maps[0].max() == 0.0
    assert maps[1].max() == pytest.approx(1.0)


def test_bfloat16_and_float32_agree_on_a_tiny_trained_model():
    from ml_core.precision import resolve_precision, with_precision

    trained = train_on_phantoms(input_size=32, samples=64, epochs=3, target_sensitivity=0.95)
    images, _ = draw_phantom_set(16, size=32, seed=5)
    batch = to_model_batch(images, trained.preprocessing)

    reduced = with_precision(trained.model, "bfloat16")
    full = np.asarray(trained.model.predict_on_batch(batch))
    half = np.asarray(reduced.predict_on_batch(batch))

    assert reduced.get_layer("block1_conv1").compute_dtype == "bfloat16"
    assert half.dtype == np.float32  # the probabilities layer stays float32
    np.testing.assert_allclose(half, full, atol=0.02)
    assert with_precision(trained.model, "float32") is trained.model
    assert resolve_precision("auto", cpu_flags={"avx2", "avx512_bf16"}) == "bfloat16"
    assert resolve_precision("auto", cpu_flags={"avx2"}) == "float32"
    assert resolve_precision("float32", cpu_flags={"avx512_bf16"}) == "float32"
    with pytest.raises(ValueError, match="precision must be one of"):
        resolve_precision("int8")


def test_the_repository_ships_a_ct_model_within_its_size_with_the_report_its_card_gives():
    from pathlib import Path

    from ml_core.shipped import SHIPPED_MODEL_DIR, WEIGHTS_FILE, load_shipped

    model, description = load_shipped(SHIPPED_MODEL_DIR)

    assert (SHIPPED_MODEL_DIR / WEIGHTS_FILE).stat().st_size <= 35 * 2**20
    assert description["classes"] == CLASSES
    assert model.input_shape[1:] == (description["input_size"],) * 2 + (3,)
    held_out = description["report"]["held_out"]
    assert held_out["n"] == {"stone": 163, "normal": 600}
    assert held_out["sensitivity"] >= 0.95
    card = (Path(__file__).resolve().parent.parent / "docs" / "model-card.md").read_text()
    assert f"{held_out['auc']:.3f}" in card
    assert f"{description['threshold']:.3f}" in card
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    assert f'"threshold":{round(description["threshold"], 4)},' in readme  # what the API says
    preprocessing = PreprocessingConfig(**description["preprocessing"])
    images, _ = draw_phantom_set(4, size=64, seed=3)
    probabilities = model.predict(to_model_batch(images, preprocessing), verbose=0)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)
