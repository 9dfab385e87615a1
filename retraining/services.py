"""Turning confirmed labels into training runs. A run is planned first and starts only once
its every block can be filled; the evaluation set it plans is frozen once the run has a
candidate to judge, and never trained on."""

from dataclasses import dataclass, field

from django.conf import settings

from ml_core.datasets import LabelledImage, block_split, class_counts, without_neighbours
from retraining.selectors import (
    confirmed_label_entries,
    label_training_parameters,
    new_confirmed_label_hashes,
    new_confirmed_labels,
    refusal_summary,
    refused_candidates_in_a_row,
)
from training.evaluation import classes_short_of, enough_to_judge, recent_evaluation_set_freeze
from training.models import TrainingRun
from training.runs import training_run_create
from training.selectors import (
    active_training_run,
    current_evaluation_set,
    evaluation_set_entries,
    serving_model_version,
)


class NotReadyToTrain(ValueError):
    """The labels cannot fill every block of a run yet; nothing was stored."""

    def __init__(self, waiting_for: list[str], labelled: dict[str, int] | None = None):
        held = ""
        if labelled:
            counts = ", ".join(f"{n} {label}" for label, n in sorted(labelled.items()))
            held = (
                f"the {sum(labelled.values())} labelled images ({counts}) cannot fill every "
                "block of a run yet (evaluation, recent, training and validation, each apart); "
            )
        super().__init__(f"Not started: {held}waiting for " + "; ".join(waiting_for))
        self.waiting_for = waiting_for


@dataclass(frozen=True)
class TrainingPlan:
    """What a run would train on and be judged by, before anything is stored. waiting_for
    says, block by block, what the labels cannot fill yet; empty when the run can start."""

    training: list[LabelledImage]
    evaluation: list[LabelledImage]  # the block to freeze as the evaluation set; [] if frozen
    recent: list[LabelledImage]  # the newest labels, held out to judge the candidate; [] if none
    waiting_for: list[str]
    labelled: dict[str, int] = field(default_factory=dict)  # every image planned from, per class


def training_run_request(
    *,
    parameters: dict | None = None,
    trigger: str,
    requested_by=None,
    enqueue: bool = True,
) -> TrainingRun:
    """Start a training run on every confirmed label outside the evaluation set, once the
    labels can fill each block (NotReadyToTrain says what is missing)."""
    parameters = parameters or label_training_parameters()
    plan = label_training_plan(parameters)
    return training_run_from_plan(
        plan, parameters=parameters, source="confirmed labels", trigger=trigger,
        requested_by=requested_by, enqueue=enqueue,
    )  # fmt: skip


def label_training_plan(parameters: dict | None = None) -> TrainingPlan:
    """The plan of a run on the confirmed labels. The labels that are new since the last run
    judge a candidate against the version it would replace (what neither trained on), so
    while a version serves the plan needs a recent block that can judge."""
    parameters = parameters or label_training_parameters()
    classes = list(parameters.get("classes", settings.KIDNEY_CLASSES))
    entries = confirmed_label_entries(classes)
    if not entries:
        return TrainingPlan([], [], [], ["confirmed labels: there are no confirmed labels yet"])
    return training_plan(
        entries=entries,
        classes=classes,
        train_on_last_block=True,
        require_evaluation_set=True,
        recent=new_confirmed_label_hashes() if serving_model_version() else None,
    )


def training_run_outside_evaluation_set(
    *,
    entries: list[LabelledImage],
    parameters: dict,
    source: str,
    trigger: str,
    requested_by=None,
    enqueue: bool = True,
) -> TrainingRun:
    """A run on a folder's images: their last block is never trained on (it becomes the
    evaluation set, if none is frozen and it is large enough)."""
    plan = training_plan(
        entries=entries,
        classes=list(parameters.get("classes", settings.KIDNEY_CLASSES)),
        train_on_last_block=False,
        require_evaluation_set=False,
        recent=None,
    )
    return training_run_from_plan(
        plan, parameters=parameters, source=source, trigger=trigger,
        requested_by=requested_by, enqueue=enqueue,
    )  # fmt: skip


def training_run_from_plan(
    plan: TrainingPlan, *, parameters, source, trigger, requested_by, enqueue
) -> TrainingRun:
    if plan.waiting_for:
        raise NotReadyToTrain(plan.waiting_for, plan.labelled)
    recent_set = None
    if plan.recent:
        recent_set = recent_evaluation_set_freeze(
            entries=plan.recent, source=f"newest {len(plan.recent)} of the {source}"
        )
    return training_run_create(
        entries=plan.training,
        parameters=parameters,
        data_source=f"{len(plan.training)} images from {source}",
        trigger=trigger,
        requested_by=requested_by,
        enqueue=enqueue,
        recent_evaluation_set=recent_set,
        evaluation_entries=plan.evaluation,
    )


def training_plan(
    *,
    entries: list[LabelledImage],
    classes: list[str],
    train_on_last_block: bool,
    require_evaluation_set: bool,
    recent: set[str] | None,
) -> TrainingPlan:
    """Split these images as a run would. The last block of each class (in acquisition
    order, after a gap) is the evaluation set unless one is frozen already; it is planned
    only once it holds KIDNEY_EVALUATION_MIN_PER_CLASS of every class. A folder's own last
    block is never trained on (train_on_last_block=False), and neither are the evaluation
    set and the gap on either side of it. With recent (the sha256s of the labels new since
    the last run), the newest block of what remains (and its gap) is held out to judge the
    candidate: as many as the new labels, at least KIDNEY_RECENT_EVALUATION_MIN_PER_CLASS of
    each class and at most KIDNEY_RECENT_EVALUATION_FRACTION of it, so each run trains on
    the block that judged the run before it. The rest is the run's training and validation
    blocks, and each must hold every class."""
    waiting_for = []
    labelled = class_counts(entries)
    kept, held_out = block_split(
        entries, fraction=settings.KIDNEY_EVALUATION_FRACTION, gap=settings.KIDNEY_SPLIT_GAP
    )
    evaluation_set = current_evaluation_set()
    frozen = evaluation_set_entries(evaluation_set) if evaluation_set is not None else []
    evaluation_hashes = {entry.sha256 for entry in frozen}
    evaluation = []
    minimum = settings.KIDNEY_EVALUATION_MIN_PER_CLASS
    # A set frozen short of the minimum (before every class was counted) is completed by the
    # last block, as a new version of it, like a set that is not frozen yet.
    complete = bool(frozen) and not classes_short_of(class_counts(frozen), classes, minimum)
    if not complete:
        added = [entry for entry in held_out if entry.sha256 not in evaluation_hashes]
        evaluation_hashes |= {entry.sha256 for entry in held_out}
        short = classes_short_of(class_counts(frozen + added), classes, minimum)
        if not short:
            evaluation = added
        elif require_evaluation_set:
            waiting_for.append(
                f"the evaluation set (the last {settings.KIDNEY_EVALUATION_FRACTION:.0%} of "
                f"each class) to hold {minimum} images of each class "
                f"(KIDNEY_EVALUATION_MIN_PER_CLASS); it would hold {short}"
            )
    if not train_on_last_block or not (complete or evaluation):
        # Whatever cannot be frozen yet is still kept out: it can become part of the
        # evaluation set once there is enough, and no candidate will have trained on it.
        entries = kept
    # Labels confirmed after the set was frozen follow it in acquisition order: neighbouring
    # slices on either side are near-copies of it, and would let a candidate learn the set.
    training = without_neighbours(entries, evaluation_hashes, gap=settings.KIDNEY_SPLIT_GAP)
    newest = []
    if recent is not None:
        recent_minimum = settings.KIDNEY_RECENT_EVALUATION_MIN_PER_CLASS
        # Counted among what may be trained on: new labels beside the evaluation set are not.
        recent_counts = class_counts([entry for entry in training if entry.sha256 in recent])
        older, newest = block_split(
            training,
            fraction=settings.KIDNEY_RECENT_EVALUATION_FRACTION,
            gap=settings.KIDNEY_SPLIT_GAP,
            at_most={
                label: max(recent_minimum, recent_counts.get(label, 0))
                for label in class_counts(training)
            },
        )
        if enough_to_judge(class_counts(newest)):
            training = older
        else:
            waiting_for.append(
                f"the recent block (the newest labels) to hold {recent_minimum} normal and "
                f"{recent_minimum} abnormal images (KIDNEY_RECENT_EVALUATION_MIN_PER_CLASS); "
                "it would hold "
                f"{class_counts(newest) or 'none'}"
            )
            newest = []
    fitting, validation = block_split(
        training, fraction=settings.KIDNEY_VALIDATION_FRACTION, gap=settings.KIDNEY_SPLIT_GAP
    )
    for name, block in (("training", fitting), ("validation", validation)):
        short = classes_short_of(class_counts(block), classes, 1)
        if short:
            waiting_for.append(f"the {name} block to hold every class; it would hold {short}")
    return TrainingPlan(
        training=training, evaluation=evaluation, recent=newest, waiting_for=waiting_for,
        labelled=labelled,
    )  # fmt: skip


def retrain_if_enough_new_labels() -> TrainingRun | None:
    """celery beat's retrain check: a run once enough labels arrived since the last run and
    they can fill each block of it."""
    if active_training_run() is not None:
        return None
    if new_confirmed_labels().count() < settings.KIDNEY_RETRAIN_MIN_NEW_LABELS:
        return None
    try:
        return training_run_request(trigger=TrainingRun.Trigger.SCHEDULE)
    except NotReadyToTrain:
        return None  # the trigger's status says what it waits for


def trigger_status() -> dict:
    """What celery beat's retrain check would do now, and why; and, once the gate has kept
    KIDNEY_LOOP_REFUSALS_ALERT candidates in a row out, what kept them out."""
    active = active_training_run()
    new_labels = new_confirmed_labels().count()
    needed = settings.KIDNEY_RETRAIN_MIN_NEW_LABELS
    waiting_for = []
    if active is not None:
        waiting_for.append(f"training run {active.pk} to end (it is {active.status})")
    if new_labels < needed:
        waiting_for.append(
            f"{needed - new_labels} more confirmed labels: {new_labels} since the last run, "
            f"a run starts at {needed} (KIDNEY_RETRAIN_MIN_NEW_LABELS)"
        )
    waiting_for += label_training_plan().waiting_for
    streak = refused_candidates_in_a_row()
    alert = ""
    if len(streak) >= settings.KIDNEY_LOOP_REFUSALS_ALERT:
        versions = ", ".join(f"v{refused['version']}" for refused in streak)
        alert = (
            f"The gate kept the last {len(streak)} candidates ({versions}) from serving: "
            f"{refusal_summary(streak)}."
        )
    return {
        "ready": not waiting_for,
        "waiting_for": waiting_for,
        "active_run": active.pk if active else None,
        "new_labels": new_labels,
        "new_labels_needed": needed,
        "refused_in_a_row": len(streak),
        "refused": streak,
        "refusal_alert": alert,
    }
