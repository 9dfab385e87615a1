"""Rows for tests that need scans in a given state without going through an upload."""

import hashlib
import uuid

from django.core.files.base import ContentFile

from accounts.services import user_organisation
from scans.models import Prediction, Scan


def make_scan(user, *, image: bytes | None = None, **fields) -> Scan:
    """A scan row in the user's organisation; with `image`, its bytes are stored as its file."""
    fields.setdefault("organisation", user_organisation(user))
    scan = Scan(
        sha256=hashlib.sha256(image or uuid.uuid4().bytes).hexdigest(),
        content_type="image/png",
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
