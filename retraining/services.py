"""Turning confirmed labels into training runs. The evaluation set is frozen from them the
first time it is needed, and never trained on."""

from django.conf import settings

from ml_core.datasets import LabelledImage, block_split, class_counts, without_neighbours
from retraining.selectors import (
    confirmed_label_entries,
    label_training_parameters,
    new_confirmed_label_hashes,
    new_confirmed_labels,
)
from training.evaluation import (
    enough_to_judge,
    evaluation_set_freeze,
    recent_evaluation_set_freeze,
)
from training.models import TrainingRun
from training.runs import training_run_create
from training.selectors import (
    active_training_run,
    current_evaluation_set,
    evaluation_set_entries,
    serving_model_version,
)


def training_run_request(
    *,
    parameters: dict | None = None,
    trigger: str,
    requested_by=None,
    enqueue: bool = True,
) -> TrainingRun:
    """Start a training run on every confirmed label outside the evaluation set."""
    parameters = parameters or label_training_parameters()
    entries = confirmed_label_entries(list(parameters.get("classes", settings.KIDNEY_CLASSES)))
    if not entries:
        raise ValueError("There are no confirmed labels to train on.")
    return training_run_outside_evaluation_set(
        entries=entries,
        parameters=parameters,
        source="confirmed labels",
        trigger=trigger,
        requested_by=requested_by,
        enqueue=enqueue,
        train_on_last_block=True,
        # The labels that are new since the last run judge a candidate against the version
        # it would replace: what neither of them has trained on.
        recent=new_confirmed_label_hashes() if serving_model_version() else None,
    )


def training_run_outside_evaluation_set(
    *,
    entries: list[LabelledImage],
    parameters: dict,
    source: str,
    trigger: str,
    train_on_last_block: bool,
    recent: set[str] | None = None,
    requested_by=None,
    enqueue: bool = True,
) -> TrainingRun:
    """A run on these images less the evaluation set. Their last block (per class, in
    acquisition order, after a gap) becomes the evaluation set unless one is frozen already.
    A folder's own last block and gap are never trained on (train_on_last_block=False).
    The evaluation set and the gap on either side of it are never trained on. With recent
    (the sha256s of the labels new since the last run), the newest block of what remains (and
    its gap) is held out too and judges the candidate, once it is large enough to judge; else
    everything is trained on. The block is as many as the new labels, at least
    KIDNEY_RECENT_EVALUATION_MIN_PER_CLASS of each class and at most
    KIDNEY_RECENT_EVALUATION_FRACTION of it: so each run trains on the block that judged the
    run before it, and the newest data are never more than one run away from training."""
    kept, held_out = block_split(
        entries, fraction=settings.KIDNEY_EVALUATION_FRACTION, gap=settings.KIDNEY_SPLIT_GAP
    )
    evaluation_set = current_evaluation_set()
    if evaluation_set is None and large_enough_to_freeze(class_counts(held_out)):
        evaluation_set = evaluation_set_freeze(entries=held_out, source=source, actor=requested_by)
    if not train_on_last_block or evaluation_set is None:
        # Too small to freeze, the last block is still kept out: it can become part of the
        # evaluation set once there is enough, and no candidate will have trained on it.
        entries = kept
    evaluation_hashes = (
        {entry.sha256 for entry in evaluation_set_entries(evaluation_set)}
        if evaluation_set is not None
        else set()
    )
    # Labels confirmed after the set was frozen follow it in acquisition order: neighbouring
    # slices on either side are near-copies of it, and would let a candidate learn the set.
    training_entries = without_neighbours(entries, evaluation_hashes, gap=settings.KIDNEY_SPLIT_GAP)
    recent_set = None
    if recent is not None:
        minimum = settings.KIDNEY_RECENT_EVALUATION_MIN_PER_CLASS
        # Counted among what may be trained on: new labels beside the evaluation set are not.
        recent_counts = class_counts(
            [entry for entry in training_entries if entry.sha256 in recent]
        )
        older, newest = block_split(
            training_entries,
            fraction=settings.KIDNEY_RECENT_EVALUATION_FRACTION,
            gap=settings.KIDNEY_SPLIT_GAP,
            at_most={
                label: max(minimum, recent_counts.get(label, 0))
                for label in class_counts(training_entries)
            },
        )
        if enough_to_judge(class_counts(newest)):
            recent_set = recent_evaluation_set_freeze(
                entries=newest, source=f"newest {len(newest)} of the {source}"
            )
            training_entries = older
    return training_run_create(
        entries=training_entries,
        parameters=parameters,
        data_source=f"{len(training_entries)} images from {source}",
        trigger=trigger,
        requested_by=requested_by,
        enqueue=enqueue,
        recent_evaluation_set=recent_set,
    )


def large_enough_to_freeze(counts: dict[str, int]) -> bool:
    """Every class has at least KIDNEY_EVALUATION_MIN_PER_CLASS images."""
    return bool(counts) and min(counts.values()) >= settings.KIDNEY_EVALUATION_MIN_PER_CLASS


def retrain_if_enough_new_labels() -> TrainingRun | None:
    """celery beat's retrain check: a run once enough labels arrived since the last run."""
    if active_training_run() is not None:
        return None
    if new_confirmed_labels().count() < settings.KIDNEY_RETRAIN_MIN_NEW_LABELS:
        return None
    return training_run_request(trigger=TrainingRun.Trigger.SCHEDULE)
