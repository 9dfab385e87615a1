"""A stored scan, opened and decoded: for inference and heatmaps through the model version's
preprocessing (its CT window for DICOM), for viewing through the default window."""

from django.conf import settings

from ml_core import dicom
from ml_core.images import DecodedImage, decode_image
from ml_core.preprocessing import PreprocessingConfig
from scans.models import Scan


def stored_image(
    scan: Scan,
    preprocessing: PreprocessingConfig | None = None,
    *,
    window: dicom.CtWindow | None = None,
) -> DecodedImage:
    """Raises OSError when storage cannot be read, ml_core.errors.ImageDecodeError when the
    stored bytes do not decode. A DICOM slice is seen through `window`, else the
    preprocessing's, else the soft-tissue window."""
    # Through the storage, not the field's cached file: a scan read twice (a study's key
    # slices) would find that file closed, and a storage with no local paths cannot reopen it.
    with scan.file.storage.open(scan.file.name, "rb") as stored:
        data = stored.read()
    return decode_image(
        data,
        max_pixels=settings.KIDNEY_MAX_IMAGE_PIXELS,
        min_side=settings.KIDNEY_MIN_IMAGE_SIDE,
        window=window or (preprocessing.window if preprocessing else dicom.SOFT_TISSUE_WINDOW),
    )
