"""The worker's side of the workflow: claim queued scans as a batch, classify them in one
forward pass, store a prediction per scan. Everything here is safe to run twice."""

import itertools
import logging
import os
import time
from datetime import timedelta
from pathlib import Path

import numpy as np
from django.conf import settings
from django.core.files.base import ContentFile
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from ml_core.decision import NEGATIVE_CLASS, abnormal_scores, decide
from ml_core.errors import ImageDecodeError
from ml_core.evidence import METHOD as EVIDENCE_METHOD
from ml_core.evidence import overlay_png
from ml_core.precision import accelerator_present, resolve_precision
from ml_core.predictor import Predictor
from ml_core.preprocessing import to_model_batch
from ml_core.study import study_verdict
from scans.dispatch import inference_enqueue, study_enqueue
from scans.images import stored_image
from scans.models import Prediction, Scan, Study
from scans.selectors import study_series
from scans.services import heatmaps_request
from training.files import artifact_local_path, twin_local_path
from training.models import ModelVersion
from training.selectors import serving_model_version

logger = logging.getLogger(__name__)

# Loaded models by version id and twin, in the worker process (after the fork): the serving
# version's, and at most one other (an evidence map for a scan an older version predicted), so
# computing that map never unloads the serving model. A twin built or rebuilt since is loaded
# at the next batch.
_loaded: dict[tuple[int, str], Predictor] = {}
# Batches timed per runtime when KIDNEY_INFERENCE_RUNTIME is auto.
RUNTIME_TRIAL_BATCHES = 3


class NoServingModel(RuntimeError):
    pass


def serving_predictor() -> tuple[ModelVersion, Predictor]:
    model_version = serving_model_version()
    if model_version is None:
        raise NoServingModel("No model version is serving; bootstrap or promote one.")
    return model_version, predictor_for(model_version)


def predictor_for(model_version: ModelVersion) -> Predictor:
    """The loaded model of this version, loading it once (with its int8 twin where
    KIDNEY_INFERENCE_RUNTIME lets it serve); models of versions that neither serve nor were
    just asked for are let go."""
    key = (model_version.pk, model_version.int8_artifact if model_version.int8_twin_passed else "")
    if key not in _loaded:
        path = artifact_local_path(model_version.artifact)
        precision = resolve_precision(settings.KIDNEY_INFERENCE_PRECISION)
        logger.info("Loading model %s from %s in %s", model_version.label, path, precision)
        predictor = Predictor.load(
            str(path), precision=precision, max_batch_size=settings.KIDNEY_INFERENCE_BATCH_SIZE
        )
        _serve_twin_if_chosen(predictor, model_version)
        serving = serving_model_version()
        keep = {model_version.pk, serving.pk if serving else None}
        for stale in [loaded for loaded in _loaded if loaded[0] not in keep or loaded[0] == key[0]]:
            del _loaded[stale]
        _loaded[key] = predictor
    return _loaded[key]


def _serve_twin_if_chosen(predictor: Predictor, model_version: ModelVersion) -> None:
    """Predictions from the version's int8 twin where KIDNEY_INFERENCE_RUNTIME chooses it: one
    that passed its gate, on a CPU, and for auto only if it ran faster than Keras here."""
    runtime = settings.KIDNEY_INFERENCE_RUNTIME
    if runtime == "keras":
        return
    if not model_version.int8_twin_passed:
        if runtime == "openvino-int8":
            logger.warning(
                "%s has no int8 twin that passed its gate; Keras serves it", model_version.label
            )
        return
    if accelerator_present():
        logger.info("A GPU is present: Keras serves %s", model_version.label)
        return
    from ml_core.int8 import OpenVinoPredictor

    size = model_version.input_size
    batch = np.zeros((settings.KIDNEY_INFERENCE_BATCH_SIZE, size, size, 3), np.float32)
    try:
        twin = OpenVinoPredictor.load(
            twin_local_path(model_version.int8_artifact),
            max_batch_size=settings.KIDNEY_INFERENCE_BATCH_SIZE,
        )
        twin.predict(batch)  # it runs on this CPU (and its kernels are chosen)
    except Exception:
        # A CPU the runtime cannot serve it on (seen with oneDNN capped below AVX-512).
        logger.exception("The int8 twin of %s does not run here; Keras serves", model_version.label)
        return
    if runtime == "auto":
        twin_seconds = _seconds_per_batch(twin.predict, batch)
        keras_seconds = _seconds_per_batch(predictor.predict_float, batch)
        logger.info(
            "%s: %.0f ms a batch on Keras (%s), %.0f ms on its int8 twin",
            model_version.label, keras_seconds * 1000, predictor.runtime, twin_seconds * 1000,
        )  # fmt: skip
        if twin_seconds >= keras_seconds:
            return
    predictor.serve_twin(twin)
    logger.info("%s serves on its int8 twin (OpenVINO)", model_version.label)


def _seconds_per_batch(predict, batch: np.ndarray) -> float:
    predict(batch)  # warm-up: graph tracing, kernel selection
    started = time.perf_counter()
    for _ in range(RUNTIME_TRIAL_BATCHES):
        predict(batch)
    return (time.perf_counter() - started) / RUNTIME_TRIAL_BATCHES


def loaded_model_versions() -> list[int]:
    return sorted(version_id for version_id, _ in _loaded)


def scans_claim(*, scan_ids: list[str], task_id: str, batch_size: int) -> list[Scan]:
    """Claim the task's own queued scans, plus other queued scans up to a full batch.

    A scan already claimed by this task id is claimed again: that is a redelivered message
    whose worker died. Scans claimed by another live task, or backing off, are left alone.

    A scan claimed before that never finished may be what killed its worker, so it is claimed
    alone, and it fails instead once it used up its attempts: one poison scan can neither take
    workers down forever nor take a batch of others with it. The task's other scans go back to
    the queue and are sent again.
    """
    now = timezone.now()
    ready = Q(not_before__isnull=True) | Q(not_before__lte=now)
    # A study's slices are classified with their study (study_classify), never alone.
    alone = Q(study__isnull=True)
    mine = Q(id__in=scan_ids, status=Scan.Status.QUEUED) & ready & alone | Q(
        status=Scan.Status.PROCESSING, claimed_by=task_id
    )
    waiting = Q(status=Scan.Status.QUEUED) & ready & alone
    with transaction.atomic():
        locked = Scan.objects.select_for_update(skip_locked=True)
        candidates = list(locked.filter(mine).order_by("created")[:batch_size])
        room = batch_size - len(candidates)
        if room > 0:
            candidates += list(
                locked.filter(waiting)
                .exclude(id__in=[scan.id for scan in candidates])
                .order_by("created")[:room]
            )
        exhausted = [s.id for s in candidates if s.attempts >= settings.KIDNEY_SCAN_MAX_ATTEMPTS]
        Scan.objects.filter(id__in=exhausted).update(
            status=Scan.Status.FAILED,
            error=f"Gave up after {settings.KIDNEY_SCAN_MAX_ATTEMPTS} attempts: the worker "
            "stopped while processing this scan each time.",
            claimed_by="",
            claimed_at=None,
        )
        candidates = [scan for scan in candidates if scan.id not in exhausted]
        suspects = [scan for scan in candidates if scan.attempts > 0]
        claimed = suspects[:1] if suspects else candidates
        left = [scan.id for scan in candidates if scan not in claimed]
        Scan.objects.filter(id__in=left, claimed_by=task_id).update(
            status=Scan.Status.QUEUED, claimed_by="", claimed_at=None
        )
        Scan.objects.filter(id__in=[scan.id for scan in claimed]).update(
            status=Scan.Status.PROCESSING,
            claimed_by=task_id,
            claimed_at=now,
            attempts=F("attempts") + 1,
            not_before=None,
        )
        if left:
            inference_enqueue(left)
    for scan in claimed:
        scan.attempts += 1
    if exhausted:
        logger.warning("Failed %d scan(s) that used up their attempts", len(exhausted))
    return claimed


def scan_retry_later(*, scan: Scan, reason: str) -> None:
    """A failure that may pass (storage unreachable): back off and try again, doubling the
    wait; fail with the reason at the last attempt. Other scans go on meanwhile."""
    if scan.attempts >= settings.KIDNEY_SCAN_MAX_ATTEMPTS:
        scan_fail(scan=scan, reason=f"{reason} (after {scan.attempts} attempts)")
        return
    delay = settings.KIDNEY_SCAN_RETRY_SECONDS * 2 ** (scan.attempts - 1)
    Scan.objects.filter(pk=scan.pk, status=Scan.Status.PROCESSING).update(
        status=Scan.Status.QUEUED,
        claimed_by="",
        claimed_at=None,
        error=reason,
        not_before=timezone.now() + timedelta(seconds=delay),
    )
    inference_enqueue([scan.pk], countdown=delay)
    logger.warning("Scan %s: attempt %d failed, retrying in %.0f s", scan.pk, scan.attempts, delay)


def scans_release(*, task_id: str) -> None:
    """Put this task's claimed scans back in the queue (before a retry)."""
    Scan.objects.filter(status=Scan.Status.PROCESSING, claimed_by=task_id).update(
        status=Scan.Status.QUEUED, claimed_by="", claimed_at=None
    )


def scans_requeue_stale(*, queued_before, claimed_before) -> int:
    """Send again the scans whose message may be lost: queued since before `queued_before`,
    or claimed by a task that has not finished since before `claimed_before` (its claim is
    released). The database is the source of truth; the broker only carries messages."""
    with transaction.atomic():
        Scan.objects.filter(status=Scan.Status.PROCESSING, claimed_at__lt=claimed_before).update(
            status=Scan.Status.QUEUED, claimed_by="", claimed_at=None
        )
        stale = Scan.objects.filter(
            status=Scan.Status.QUEUED, created__lt=queued_before, study__isnull=True
        )
        scan_ids = list(stale.order_by("created").values_list("id", flat=True))
        inference_enqueue(scan_ids)
    return len(scan_ids)


def scans_fail(*, scan_ids: list[str], task_id: str, reason: str) -> None:
    Scan.objects.filter(
        Q(id__in=scan_ids) | Q(claimed_by=task_id),
        status__in=[Scan.Status.QUEUED, Scan.Status.PROCESSING],
    ).update(status=Scan.Status.FAILED, error=reason, claimed_by="", claimed_at=None)


def scans_classify(*, scan_ids: list[str], task_id: str) -> int:
    """Classify the task's scans (and others waiting) in one batch; return how many."""
    # The model first: scans are claimed only for as long as the forward pass takes.
    model_version, predictor = serving_predictor()
    claimed = scans_claim(
        scan_ids=scan_ids, task_id=task_id, batch_size=settings.KIDNEY_INFERENCE_BATCH_SIZE
    )
    if not claimed:
        return 0
    _hold_for_fault_test(claimed)
    readable, pixels = [], []
    for scan in claimed:
        try:
            image = stored_image(scan, model_version.preprocessing_config)
        except OSError as error:
            # strerror, not str(error): the reason is shown to users, the server's path is not.
            reason = f"The stored file could not be read: {error.strerror or type(error).__name__}"
            scan_retry_later(scan=scan, reason=reason)
            continue
        except ImageDecodeError as error:
            # The bytes themselves are bad: another attempt cannot help.
            scan_fail(scan=scan, reason=f"The stored image could not be decoded: {error}")
            continue
        readable.append(scan)
        pixels.append(image.pixels)
    if not readable:
        return 0
    batch = to_model_batch(pixels, model_version.preprocessing_config)
    started = time.perf_counter()
    probabilities = predictor.predict(batch)
    share_ms = (time.perf_counter() - started) * 1000.0 / len(readable)
    predictions_store(
        scans=readable,
        model_version=model_version,
        probabilities=probabilities,
        inference_ms=share_ms,
        overlays={},
        runtime=predictor.runtime,
    )
    evidence_maps_queue(readable, probabilities, model_version)
    return len(readable)


def worth_explaining(scores: np.ndarray, threshold: float) -> np.ndarray:
    """The scans a radiologist will look at first: flagged abnormal, or so near the threshold
    that the review queue puts them at its head."""
    return (scores >= threshold) | (np.abs(scores - threshold) <= settings.KIDNEY_EVIDENCE_MARGIN)


def evidence_maps_queue(scans: list[Scan], probabilities: np.ndarray, model_version) -> None:
    """Queue the evidence maps KIDNEY_EVIDENCE_MAPS asks for, once the predictions are
    stored: a map costs hundreds of forward passes, and no prediction waits for one."""
    if settings.KIDNEY_EVIDENCE_MAPS == "on_request":
        return
    rows = np.arange(len(scans))
    if settings.KIDNEY_EVIDENCE_MAPS == "flagged":
        scores = abnormal_scores(probabilities, model_version.classes)
        rows = np.flatnonzero(worth_explaining(scores, model_version.threshold))
    scan_ids = [scans[row].pk for row in rows]
    heatmaps_request(
        prediction_ids=list(
            Prediction.objects.filter(scan_id__in=scan_ids).values_list("pk", flat=True)
        )
    )


def overlays_by_scan(scans: list[Scan], maps: np.ndarray) -> dict:
    """(overlay PNG, whether it shows anything), by scan id, each at its scan's size. A map
    without signal: no region of the slice carries its P(abnormal)."""
    return {
        scan.pk: (overlay_png(evidence, scan.width, scan.height), bool(evidence.max() > 0))
        for scan, evidence in zip(scans, maps, strict=True)
    }


def heatmap_save(prediction: Prediction, overlay: tuple[bytes, bool]) -> None:
    png, signal = overlay
    if prediction.heatmap:
        prediction.heatmap.delete(save=False)  # an earlier method's map
    prediction.heatmap_signal = signal
    prediction.heatmap_method = EVIDENCE_METHOD
    prediction.heatmap.save(f"{prediction.scan_id}.png", ContentFile(png), save=True)


def heatmap_compute(*, scan_id) -> None:
    """One scan's evidence map, by the version that predicted it, unless it has one by the
    current method already."""
    prediction = Prediction.objects.select_related("scan", "model_version").get(scan_id=scan_id)
    if prediction.evidence_map_ready:
        return
    scan, model_version = prediction.scan, prediction.model_version
    image = stored_image(scan, model_version.preprocessing_config)
    batch = to_model_batch([image.pixels], model_version.preprocessing_config)
    _, maps = predictor_for(model_version).predict_and_explain(batch, model_version.classes)
    heatmap_save(prediction, overlays_by_scan([scan], maps)[scan.pk])


def _hold_for_fault_test(claimed: list[Scan]) -> None:
    """KIDNEY_TEST_HOLD_BATCH_FILE (tests only): the first process to claim a batch writes
    which scans it holds to that file and waits to be killed, so a fault test kills a worker
    inside a batch without racing it. Later batches (the file exists) go on as usual."""
    hold_file = settings.KIDNEY_TEST_HOLD_BATCH_FILE
    if not hold_file:
        return
    draft = Path(f"{hold_file}.{os.getpid()}")
    draft.write_text("\n".join(str(scan.pk) for scan in claimed))
    try:
        os.link(draft, hold_file)  # atomic: one process holds, with the file complete
    except FileExistsError:
        return
    finally:
        draft.unlink()
    while True:
        time.sleep(1)


def scan_fail(*, scan: Scan, reason: str) -> None:
    Scan.objects.filter(pk=scan.pk).exclude(status=Scan.Status.PREDICTED).update(
        status=Scan.Status.FAILED, error=reason, claimed_by="", claimed_at=None
    )


@transaction.atomic
def predictions_store(
    *,
    scans: list[Scan],
    model_version: ModelVersion,
    probabilities: np.ndarray,
    inference_ms: float,
    overlays: dict,
    runtime: str = "",
) -> None:
    """Store one batch's predictions (with their evidence maps, if any) in one transaction. Scans
    predicted meanwhile (by a redelivered task) are left as they are, so a second call
    changes nothing."""
    row_of = {scan.pk: row for row, scan in enumerate(scans)}
    pending = list(
        Scan.objects.select_for_update()
        .filter(pk__in=row_of)
        .exclude(status=Scan.Status.PREDICTED)
        .values_list("pk", flat=True)
    )
    classes = model_version.classes
    scores = abnormal_scores(probabilities, classes)
    predictions = Prediction.objects.bulk_create(
        Prediction(
            scan_id=scan_id,
            model_version=model_version,
            label=decide(probabilities[row_of[scan_id]], classes, model_version.threshold),
            probabilities={
                name: float(value)
                for name, value in zip(classes, probabilities[row_of[scan_id]], strict=True)
            },
            abnormal_score=float(scores[row_of[scan_id]]),
            threshold=model_version.threshold,
            inference_ms=inference_ms,
            batch_size=len(scans),
            runtime=runtime,
        )
        for scan_id in pending
    )
    for prediction in predictions:
        if prediction.scan_id in overlays:
            heatmap_save(prediction, overlays[prediction.scan_id])
    Scan.objects.filter(pk__in=pending).update(
        status=Scan.Status.PREDICTED, error="", claimed_by="", claimed_at=None
    )


class StudyNotReady(RuntimeError):
    """A slice could not be read (storage unreachable): the study is tried again later."""


def study_classify(*, study_id, task_id: str) -> bool:
    """Classify a complete study's slices in batches with the serving version, store each
    slice's prediction, and the study's verdict by the version's study rule with its key
    slices (their evidence maps computed). Returns whether it triaged the study; a study no
    longer queued (triaged, or receiving again) is left alone."""
    model_version, predictor = serving_predictor()
    with transaction.atomic():
        claimed = Study.objects.filter(
            Q(status=Study.Status.QUEUED) | Q(status=Study.Status.PROCESSING, claimed_by=task_id),
            pk=study_id,
        ).update(
            status=Study.Status.PROCESSING,
            claimed_by=task_id,
            claimed_at=timezone.now(),
            attempts=F("attempts") + 1,
        )
    if not claimed:
        return False
    study = Study.objects.get(pk=study_id)
    config = model_version.preprocessing_config
    # Read and predicted a batch at a time: a 500-slice study never sits in memory whole.
    readable_series, probabilities, seconds = [], [], 0.0
    for members in study_series(study):
        readable = []
        for start in range(0, len(members), settings.KIDNEY_INFERENCE_BATCH_SIZE):
            chunk = _readable_slices(
                members[start : start + settings.KIDNEY_INFERENCE_BATCH_SIZE], config
            )
            if not chunk:
                continue
            batch = to_model_batch([image.pixels for _, image in chunk], config)
            started = time.perf_counter()
            probabilities.append(predictor.predict(batch))
            seconds += time.perf_counter() - started
            readable += [scan for scan, _ in chunk]
        if readable:
            readable_series.append(readable)
    if not readable_series:
        study_fail(study_id=study_id, task_id=task_id, reason="No slice of it could be read.")
        return False
    scans = [scan for members in readable_series for scan in members]
    probabilities = np.concatenate(probabilities)
    share_ms = seconds * 1000.0 / len(scans)
    scores = abnormal_scores(probabilities, model_version.classes)
    rule, threshold = model_version.study_decision
    offsets = np.cumsum([0, *[len(members) for members in readable_series]])
    verdict = study_verdict(
        [scores[start:end] for start, end in itertools.pairwise(offsets)],
        rule,
        threshold,
    )
    key_rows = verdict.key_slices
    key_scans = [scans[row] for row in key_rows]
    key_batch = to_model_batch(
        [image.pixels for _, image in _readable_slices(key_scans, config)], config
    )
    _, maps = predictor.predict_and_explain(key_batch, model_version.classes)
    overlays = overlays_by_scan(key_scans, maps)
    # Flagged: the abnormal class `decide` names for the key slices' mean (a threshold of 0
    # leaves only its choice among the abnormal classes).
    label = (
        decide(probabilities[key_rows].mean(axis=0), model_version.classes, 0.0)
        if verdict.positive
        else NEGATIVE_CLASS
    )
    with transaction.atomic():
        predictions_store(
            scans=scans,
            model_version=model_version,
            probabilities=probabilities,
            inference_ms=share_ms,
            overlays={},
            runtime=predictor.runtime,
        )
        for prediction in Prediction.objects.filter(scan_id__in=overlays):
            if not prediction.evidence_map_ready:
                heatmap_save(prediction, overlays[prediction.scan_id])
        triaged = Study.objects.filter(
            pk=study_id, status=Study.Status.PROCESSING, claimed_by=task_id
        ).update(
            status=Study.Status.TRIAGED,
            verdict=label,
            score=verdict.score,
            threshold=threshold,
            model_version=model_version,
            key_slices=[str(scans[row].pk) for row in key_rows],
            triaged_at=timezone.now(),
            triage_round=F("triage_round") + 1,
            error="",
            claimed_by="",
            claimed_at=None,
        )
    if triaged:
        logger.info("Study %s triaged: %s (%d slices)", study_id, label, len(scans))
    return bool(triaged)


def _readable_slices(scans: list[Scan], config) -> list:
    """(scan, decoded image) for each slice that decodes; one that does not fails alone.
    Raises StudyNotReady when storage cannot be read (the study is tried again)."""
    readable = []
    for scan in scans:
        try:
            readable.append((scan, stored_image(scan, config)))
        except OSError as error:
            raise StudyNotReady(
                f"A slice could not be read: {error.strerror or type(error).__name__}"
            ) from None
        except ImageDecodeError as error:
            scan_fail(scan=scan, reason=f"The stored image could not be decoded: {error}")
    return readable


def study_release(*, study_id, task_id: str, reason: str) -> None:
    """Back to the queue after a failure that may pass (the task's retry claims it again)."""
    Study.objects.filter(pk=study_id, status=Study.Status.PROCESSING, claimed_by=task_id).update(
        status=Study.Status.QUEUED, claimed_by="", claimed_at=None, error=reason
    )


def study_fail(*, study_id, task_id: str, reason: str) -> None:
    Study.objects.filter(
        Q(status=Study.Status.QUEUED) | Q(status=Study.Status.PROCESSING, claimed_by=task_id),
        pk=study_id,
    ).update(status=Study.Status.FAILED, error=reason, claimed_by="", claimed_at=None)


def studies_requeue_stale(*, queued_before, claimed_before) -> int:
    """Send again the studies whose message may be lost (like scans_requeue_stale)."""
    with transaction.atomic():
        Study.objects.filter(status=Study.Status.PROCESSING, claimed_at__lt=claimed_before).update(
            status=Study.Status.QUEUED, claimed_by="", claimed_at=None
        )
        stale = list(
            Study.objects.filter(
                status=Study.Status.QUEUED, last_received__lt=queued_before
            ).values_list("pk", flat=True)
        )
        for study_id in stale:
            study_enqueue(study_id)
    return len(stale)
