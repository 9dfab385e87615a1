"""Rows for tests that need scans in a given state without going through an upload."""

import hashlib
import uuid

from django.core.files.base import ContentFile

from accounts.services import user_organisation
from scans.models import Prediction, Scan


def make_scan(user, *, image: bytes | None = None, **fields) -> Scan:
    """A scan row in the user's organisation; with `image`, its bytes are stored as its file."""
    fields.setdefault("organisation", user_organisation(user))
    fields.setdefault("content_type", "image/png")
    scan = Scan(
        sha256=hashlib.sha256(image or uuid.uuid4().bytes).hexdigest(),
        width=64,
        height=64,
        uploaded_by=user,
        **fields,
    )
    if image is None:
        scan.file.name = "scans/missing.png"
    else:
        scan.file.save("scan.png", ContentFile(image), save=False)
    scan.save()
    return scan


def make_prediction(scan: Scan, model_version, *, label: str, stone: float) -> Prediction:
    return Prediction.objects.create(
        scan=scan,
        model_version=model_version,
        label=label,
        probabilities={"normal": 1.0 - stone, "stone": stone},
        abnormal_score=stone,
        threshold=model_version.threshold,
        inference_ms=5.0,
        batch_size=1,
    )


def make_study(user, model_version, scores: list[float], *, key: int = 1, **fields):
    """A triaged study of the user's organisation: one slice per score (position = index), a
    prediction each, the `key` highest slices its key slices."""
    from django.utils import timezone

    from scans.models import Study

    organisation = user_organisation(user)
    study = Study.objects.create(
        organisation=organisation,
        study_reference=uuid.uuid4().hex,
        calling_ae_title="TESTSCU",
        status=Study.Status.TRIAGED,
        last_received=timezone.now(),
        verdict=fields.pop("verdict", "stone"),
        score=max(scores),
        threshold=model_version.threshold,
        model_version=model_version,
        triage_round=1,
        **fields,
    )
    scans = [
        make_scan(user, study=study, slice_position=float(index), status=Scan.Status.PREDICTED)
        for index in range(len(scores))
    ]
    for scan, score in zip(scans, scores, strict=True):
        make_prediction(
            scan, model_version, label="stone" if score > 0.5 else "normal", stone=score
        )
    ranked = sorted(range(len(scores)), key=lambda index: -scores[index])
    study.key_slices = [str(scans[index].pk) for index in ranked[:key]]
    study.save(update_fields=["key_slices"])
    return study, scans
