"""A model version's int8 twin: the Keras classifier converted to OpenVINO and quantised by
NNCF's post-training quantisation, its activations calibrated on the version's own training
images; the gate that decides whether it may serve in the float model's place; and the
runtime that serves it on CPUs.

A twin is saved as an OpenVINO IR pair (`.xml` and `.bin` beside it). Its activation ranges
(the only part of it that calibration decides; weights are quantised per channel from the
weights alone) can be read off and put back, so a twin calibrated where the training images
are can be rebuilt from the float model where they are not (the shipped model's).
"""

import contextlib
import os
from pathlib import Path

import numpy as np

# The gate: the twin against the float model on the same images, at the version's threshold.
MAX_AUC_CHANGE = 0.002
MAX_SENSITIVITY_CHANGE = 0.002
MAX_DECISIONS_CHANGED = 0.005
# "Calibrated on a few hundred images": NNCF's default subset is 300.
CALIBRATION_IMAGES = 300
INPUT_NAME = "image"


@contextlib.contextmanager
def _no_usage_reports():
    """NNCF and OpenVINO report usage to Google Analytics unless they think they run in CI;
    a hospital's node sends nothing out."""
    previous = os.environ.get("CI")
    os.environ["CI"] = "true"
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop("CI", None)
        else:
            os.environ["CI"] = previous


def to_openvino(model):
    """The Keras classifier as an OpenVINO model taking (n, size, size, 3) float32 input."""
    import openvino as ov
    import tensorflow as tf

    size = int(model.input_shape[1])
    signature = tf.TensorSpec((None, size, size, 3), tf.float32, name=INPUT_NAME)

    @tf.function(input_signature=[signature])
    def forward(image):
        return model(image, training=False)

    with _no_usage_reports():
        return ov.convert_model(forward)


def evenly_spaced(entries: list, count: int) -> list:
    """At most `count` of them, spread over the whole list (it is in acquisition order)."""
    if len(entries) <= count:
        return list(entries)
    return [entries[int(index)] for index in np.linspace(0, len(entries) - 1, count)]


def calibration_batches(entries: list, preprocessing, size: int = 32) -> list[np.ndarray]:
    """Labelled images (ml_core.datasets) as model input, in batches."""
    from ml_core.batches import load_intensity
    from ml_core.preprocessing import normalise

    return [
        normalise(
            np.stack([load_intensity(e.path, preprocessing) for e in entries[i : i + size]]),
            preprocessing,
        )
        for i in range(0, len(entries), size)
    ]


def quantize(model, batches: list[np.ndarray]):
    """The int8 twin of a Keras classifier: NNCF post-training quantisation (min-max ranges of
    the calibration images' activations), weights int8 per channel. Bias correction is off:
    with it the twin would depend on the calibration images beyond its activation ranges, and
    could not be rebuilt from them (docs/benchmarks.md measures what it would change)."""
    with _no_usage_reports():
        import nncf

        images = [image[None] for batch in batches for image in batch]
        if not images:
            raise ValueError("Calibrating an int8 twin needs at least one image.")
        return nncf.quantize(
            to_openvino(model),
            nncf.Dataset(images),
            subset_size=len(images),
            preset=nncf.QuantizationPreset.PERFORMANCE,
            advanced_parameters=nncf.AdvancedQuantizationParameters(disable_bias_correction=True),
        )


def activation_ranges(twin) -> list[list[list[float]]]:
    """The calibrated ranges of a twin: each activation quantiser's [input_low, input_high,
    output_low, output_high], in the graph's order (node names are numbered per process, the
    order is not). Weight quantisers are left out: they follow from the weights."""
    return [
        [
            np.asarray(node.input_value(index).get_node().get_data(), np.float32).ravel().tolist()
            for index in range(1, 5)
        ]
        for node in _activation_quantisers(twin)
    ]


def with_activation_ranges(twin, ranges: list[list[list[float]]]):
    """The twin with its activation ranges replaced by these (from activation_ranges of a
    twin of the same float model); refuses ranges that do not match its quantisers."""
    import openvino.opset13 as opset

    quantisers = _activation_quantisers(twin)
    if len(quantisers) != len(ranges):
        raise ValueError(
            f"The stored ranges are for {len(ranges)} quantisers, the twin has "
            f"{len(quantisers)}: they come from another model or another NNCF version."
        )
    for node, limits in zip(quantisers, ranges, strict=True):
        for index, values in enumerate(limits, start=1):
            shape = node.input_value(index).get_shape()
            limit = opset.constant(np.asarray(values, dtype=np.float32).reshape(list(shape)))
            node.input(index).replace_source_output(limit.output(0))
    twin.validate_nodes_and_infer_types()
    return twin


def _activation_quantisers(twin) -> list:
    quantisers = []
    for node in twin.get_ordered_ops():
        if node.get_type_name() != "FakeQuantize":
            continue
        if node.input_value(0).get_node().get_type_name() == "Constant":
            continue  # a weight quantiser
        quantisers.append(node)
    return quantisers


def save_twin(twin, xml_path: str | Path) -> tuple[Path, Path]:
    """Write the twin as an IR pair; returns (xml, bin)."""
    import openvino as ov

    xml_path = Path(xml_path)
    ov.save_model(twin, str(xml_path), compress_to_fp16=False)
    return xml_path, xml_path.with_suffix(".bin")


class OpenVinoPredictor:
    """A twin compiled for this machine's CPU: predict() as ml_core.predictor's, and
    predict_on_batch() with output_shape as a Keras model's (ml_core.training's helpers)."""

    def __init__(self, twin, *, max_batch_size: int = 32, threads: int | None = None):
        import openvino as ov

        core = ov.Core()
        config = {"PERFORMANCE_HINT": "LATENCY"}
        if threads:
            config["INFERENCE_NUM_THREADS"] = threads
        self.compiled = core.compile_model(twin, "CPU", config)
        self.max_batch_size = max_batch_size
        self.output_shape = (None, self.compiled.output(0).get_partial_shape()[-1].get_length())

    @classmethod
    def load(cls, xml_path: str | Path, **options) -> "OpenVinoPredictor":
        import openvino as ov

        return cls(ov.Core().read_model(str(xml_path)), **options)

    def predict(self, batch: np.ndarray) -> np.ndarray:
        """(n, size, size, 3) model input -> (n, classes) probabilities, in chunks."""
        request = self.compiled.create_infer_request()
        chunks = []
        for start in range(0, len(batch), self.max_batch_size):
            chunk = np.ascontiguousarray(batch[start : start + self.max_batch_size], np.float32)
            chunks.append(np.array(request.infer({0: chunk})[0]))
        return np.concatenate(chunks).astype(np.float64)

    predict_on_batch = predict


def twin_gate(
    positive: np.ndarray, float_scores: np.ndarray, twin_scores: np.ndarray, threshold: float
) -> dict:
    """The twin against the float model on one labelled block: ROC AUC and sensitivity at the
    version's threshold each within their margin, and few decisions changed. A block without
    both classes judges decisions only."""
    from ml_core.decision import roc_auc

    positive = np.asarray(positive, dtype=bool)
    float_flagged, twin_flagged = float_scores >= threshold, twin_scores >= threshold
    changed = float(np.mean(float_flagged != twin_flagged)) if len(positive) else 0.0
    checks = {
        "decisions_changed": {
            "value": changed, "maximum": MAX_DECISIONS_CHANGED,
            "passed": changed <= MAX_DECISIONS_CHANGED,
        },
    }  # fmt: skip
    if positive.any() and (~positive).any():
        float_auc, twin_auc = roc_auc(positive, float_scores), roc_auc(positive, twin_scores)
        float_sensitivity = float(np.mean(float_flagged[positive]))
        twin_sensitivity = float(np.mean(twin_flagged[positive]))
        checks["auc_change"] = {
            "float": float_auc, "twin": twin_auc, "maximum": MAX_AUC_CHANGE,
            "passed": abs(twin_auc - float_auc) <= MAX_AUC_CHANGE,
        }  # fmt: skip
        checks["sensitivity_change"] = {
            "float": float_sensitivity, "twin": twin_sensitivity,
            "maximum": MAX_SENSITIVITY_CHANGE,
            "passed": abs(twin_sensitivity - float_sensitivity) <= MAX_SENSITIVITY_CHANGE,
        }  # fmt: skip
    return {
        "passed": all(check["passed"] for check in checks.values()),
        "n": len(positive),
        "positives": int(positive.sum()),
        "max_score_change": float(np.max(np.abs(twin_scores - float_scores), initial=0.0)),
        "checks": checks,
    }
