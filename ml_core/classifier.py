"""The VGG16-based classifier: a convolutional base and a small classification head."""

from pathlib import Path

IMAGENET = "imagenet"
NO_WEIGHTS = "none"
MIN_INPUT_SIZE = 32  # VGG16's five poolings need at least 32 px
POOL_LAYER = "pool"  # the base's pooled features; every layer after it is the head
OUTPUT_LAYER = "probabilities"


class BaseWeightsUnavailable(RuntimeError):
    """The requested VGG16 base weights cannot be loaded."""


def resolve_base_weights(base_weights: str) -> str | None:
    """Map the user-facing choice to what keras.applications.VGG16 takes."""
    if base_weights == NO_WEIGHTS:
        return None
    if base_weights == IMAGENET:
        return IMAGENET
    if not Path(base_weights).is_file():
        raise BaseWeightsUnavailable(
            f"Base weights must be '{IMAGENET}', '{NO_WEIGHTS}' or a local weights file; "
            f"{base_weights!r} is none of these."
        )
    return base_weights


def build_classifier(
    classes: list[str], input_size: int, base_weights: str, *, head_units: int = 256
):
    """VGG16 convolutional base (no top) with a pooling + dense softmax head over `classes`.

    base_weights: "imagenet" (downloaded by Keras into KERAS_HOME once), "none" (random
    initialisation, for tests and offline machines) or a path to a local notop weights file.
    """
    import keras

    if len(classes) < 2:
        raise ValueError("A classifier needs at least two classes.")
    if input_size < MIN_INPUT_SIZE:
        raise ValueError(f"VGG16 needs an input of at least {MIN_INPUT_SIZE} px.")
    weights = resolve_base_weights(base_weights)
    try:
        base = keras.applications.VGG16(
            include_top=False, weights=weights, input_shape=(input_size, input_size, 3)
        )
    except Exception as error:
        if weights != IMAGENET:
            raise
        raise BaseWeightsUnavailable(
            f"Could not download the ImageNet VGG16 weights ({error}). On a machine without "
            f"internet use base weights '{NO_WEIGHTS}' or the path of a local copy of "
            "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5."
        ) from error
    features = keras.layers.GlobalAveragePooling2D(name=POOL_LAYER)(base.output)
    # Normalising the pooled features lets the head train quickly on any base, randomly
    # initialised ones included, whose raw feature scale is arbitrary.
    features = keras.layers.BatchNormalization(name="head_norm")(features)
    hidden = keras.layers.Dense(head_units, activation="relu", name="head_dense")(features)
    hidden = keras.layers.Dropout(0.3, name="head_dropout")(hidden)
    outputs = keras.layers.Dense(len(classes), activation="softmax", name=OUTPUT_LAYER)(hidden)
    return keras.Model(base.input, outputs, name="kidney_ct_vgg16")


def split_at_features(model):
    """(feature extractor, head) sharing the classifier's layers: training the head trains
    the classifier, and features can be extracted once and reused across epochs."""
    return split_after(model, POOL_LAYER)


def split_after(model, layer_name: str):
    """(the model up to that layer's output, the rest of it), sharing the model's layers; the
    classifier is a chain, so the rest is every later layer in order."""
    import keras

    cut = model.get_layer(layer_name)
    front = keras.Model(model.input, cut.output, name=f"up_to_{layer_name}")
    inputs = keras.Input(shape=cut.output.shape[1:], name=f"{layer_name}_output")
    outputs = inputs
    for layer in model.layers[model.layers.index(cut) + 1 :]:
        outputs = layer(outputs)
    return front, keras.Model(inputs, outputs, name=f"after_{layer_name}")
