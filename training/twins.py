"""Int8 twins of model versions (ml_core.int8): built, judged against their float model, kept.

A twin is calibrated on a few hundred of its version's own training images (the training
block of its run, as the run split it), or rebuilt from activation ranges recorded where the
training images were (the shipped model's). It is judged against the float model on the
version's held-out block (its run's recent block; for the shipped model, the development
set's held-out block, measured when it was shipped) and on the frozen evaluation set. A twin
that fails is kept for inspection and never serves.
"""

import logging
import tempfile
from pathlib import Path

import numpy as np
from django.conf import settings
from django.utils import timezone

from ml_core import int8
from ml_core.datasets import LabelledImage, block_split
from ml_core.decision import NEGATIVE_CLASS, abnormal_scores
from ml_core.shipped import shipped_description
from ml_core.training import predict_entries
from training import files, tracking
from training.models import SHIPPED_MODEL_CARD, ModelVersion
from training.selectors import current_evaluation_set, evaluation_set_entries

logger = logging.getLogger(__name__)


class TwinUnavailable(Exception):
    """No calibration images are known for this version."""


def int8_twin_build(
    model_version: ModelVersion,
    *,
    calibration: list[LabelledImage] | None = None,
) -> dict:
    """Build the version's twin, judge it, store it and its gate (replacing an earlier twin);
    returns the gate. calibration: images to calibrate on instead of the version's training
    block. The shipped model's twin is rebuilt from the activation ranges shipped with it,
    with the gate it passed on the held-out block then."""
    model = files.model_load(model_version.artifact)
    config = model_version.preprocessing_config
    recorded = _shipped_twin(model_version) if calibration is None else None
    ranges = recorded["ranges"] if recorded else None
    recorded_blocks = {"held_out": recorded["held_out"]} if recorded else {}
    if ranges is not None:
        blank = np.zeros((1, config.input_size, config.input_size, 3), np.float32)
        twin = int8.with_activation_ranges(int8.quantize(model, [blank]), ranges)
        calibrated_on = "activation ranges recorded with the version"
    else:
        entries = calibration if calibration is not None else training_block(model_version)
        entries = int8.evenly_spaced(entries, int8.CALIBRATION_IMAGES)
        twin = int8.quantize(model, int8.calibration_batches(entries, config))
        calibrated_on = f"{len(entries)} images"
    blocks = dict(recorded_blocks)
    predictor = int8.OpenVinoPredictor(twin, max_batch_size=settings.KIDNEY_INFERENCE_BATCH_SIZE)
    for name, entries in judging_blocks(model_version).items():
        blocks[name] = _judge(model, predictor, entries, model_version)
    gate = {
        "passed": bool(blocks) and all(block["passed"] for block in blocks.values()),
        "blocks": blocks,
        "calibration": calibrated_on,
        "built": timezone.now().isoformat(),
        "margins": {
            "auc": int8.MAX_AUC_CHANGE,
            "sensitivity": int8.MAX_SENSITIVITY_CHANGE,
            "decisions_changed": int8.MAX_DECISIONS_CHANGED,
        },
    }
    if not blocks:
        gate["detail"] = "Nothing to judge it on: no held-out block and no evaluation set yet."
    with tempfile.TemporaryDirectory() as folder:
        xml_path, _ = int8.save_twin(twin, Path(folder) / "twin.xml")
        name = files.twin_store(xml_path)
        if model_version.mlflow_run_id:
            try:
                tracking.log_int8_twin(model_version.mlflow_run_id, xml_path, gate)
            except Exception as error:
                logger.warning("MLflow did not record %s's twin: %s", model_version.label, error)
                gate["mlflow"] = f"not recorded ({type(error).__name__})"
    previous = model_version.int8_artifact
    ModelVersion.objects.filter(pk=model_version.pk).update(int8_artifact=name, int8_gate=gate)
    model_version.int8_artifact, model_version.int8_gate = name, gate
    if previous:
        files.twin_delete(previous)
    logger.info(
        "Int8 twin of %s %s its gate", model_version.label, "passed" if gate["passed"] else "failed"
    )
    return gate


def _shipped_twin(model_version: ModelVersion) -> dict | None:
    """What was recorded of the shipped model's twin, for the version that serves that model
    (the folder may hold a newer shipped model than the version bootstrapped)."""
    if model_version.model_card != SHIPPED_MODEL_CARD:
        return None
    shipped = shipped_description(settings.KIDNEY_SHIPPED_MODEL_DIR) or {}
    if shipped.get("threshold") != model_version.threshold:
        return None
    return shipped.get("int8")


def training_block(model_version: ModelVersion) -> list[LabelledImage]:
    """The images the version was trained on (its run's split), readable on this machine."""
    run = getattr(model_version, "training_run", None)
    if run is None:
        raise TwinUnavailable(
            f"{model_version.label} has no training run, so its training images are not known; "
            "give calibration images (the int8_twin command's --calibration-images)."
        )
    entries = files.local_entries(files.manifest_load(run.manifest_digest))
    train_entries, _ = block_split(
        entries, fraction=settings.KIDNEY_VALIDATION_FRACTION, gap=settings.KIDNEY_SPLIT_GAP
    )
    return train_entries


def judging_blocks(model_version: ModelVersion) -> dict[str, list[LabelledImage]]:
    """The labelled blocks the twin is judged on here: the version's held-out block (its run's
    recent block) and the frozen evaluation set, each where there is one."""
    blocks = {}
    run = getattr(model_version, "training_run", None)
    if run is not None and run.recent_evaluation_set is not None:
        blocks["held_out"] = evaluation_set_entries(run.recent_evaluation_set)
    evaluation_set = current_evaluation_set()
    if evaluation_set is not None:
        blocks[f"evaluation_set_v{evaluation_set.version}"] = evaluation_set_entries(evaluation_set)
    judged = {
        name: [entry for entry in entries if entry.label in model_version.classes]
        for name, entries in blocks.items()
    }
    return {name: files.local_entries(entries) for name, entries in judged.items() if entries}


def _judge(model, predictor, entries: list[LabelledImage], model_version: ModelVersion) -> dict:
    classes, config = model_version.classes, model_version.preprocessing_config
    float_scores = abnormal_scores(predict_entries(model, entries, config), classes)
    twin_scores = abnormal_scores(predict_entries(predictor, entries, config), classes)
    positive = np.array([entry.label != NEGATIVE_CLASS for entry in entries], dtype=bool)
    return int8.twin_gate(positive, float_scores, twin_scores, model_version.threshold)
