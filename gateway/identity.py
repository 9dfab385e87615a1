"""The identifiers a study's results need to be filed with it in the PACS, encrypted at rest
with the deployment's key (KIDNEY_DICOM_IDENTITY_KEY): what is taken from an instance, and
how it is put back on a de-identified slice to reference the original."""

import base64
import hashlib
import json

from cryptography.fernet import Fernet
from django.conf import settings
from pydicom.dataset import Dataset

# Study-level attributes the result objects carry, so the PACS files them in the study.
STUDY_KEYWORDS = (
    "PatientName",
    "PatientID",
    "IssuerOfPatientID",
    "PatientBirthDate",
    "PatientSex",
    "StudyInstanceUID",
    "StudyDate",
    "StudyTime",
    "StudyID",
    "AccessionNumber",
    "ReferringPhysicianName",
)


def _fernet() -> Fernet:
    digest = hashlib.sha256(settings.KIDNEY_DICOM_IDENTITY_KEY.encode()).digest()
    return Fernet(base64.urlsafe_b64encode(digest))


def encrypt(identity: dict) -> str:
    return _fernet().encrypt(json.dumps(identity, sort_keys=True).encode()).decode()


def decrypt(ciphertext: str) -> dict:
    return json.loads(_fernet().decrypt(ciphertext.encode()))


def study_attributes(dataset: Dataset) -> dict:
    """The study-level identifiers of an instance, as strings."""
    return {keyword: str(dataset.get(keyword, "") or "") for keyword in STUDY_KEYWORDS}


def instance_attributes(dataset: Dataset) -> dict:
    """What references this one instance in its original study."""
    return {
        "SOPClassUID": str(dataset.get("SOPClassUID", "")),
        "SOPInstanceUID": str(dataset.get("SOPInstanceUID", "")),
        "SeriesInstanceUID": str(dataset.get("SeriesInstanceUID", "")),
    }


def merged(identity: dict | None, dataset: Dataset, scan_id: str) -> dict:
    """The study's identity with this instance added (the first instance's study attributes
    are kept)."""
    identity = identity or {"study": study_attributes(dataset), "instances": {}}
    identity["instances"][scan_id] = instance_attributes(dataset)
    return identity


def restored(slice_dataset: Dataset, identity: dict, scan_id: str) -> Dataset:
    """A de-identified slice with its study's identifiers and its original UIDs put back, in
    memory, to build results that reference it."""
    for keyword, value in identity["study"].items():
        if value:
            setattr(slice_dataset, keyword, value)
    for keyword, value in identity["instances"][scan_id].items():
        if value:
            setattr(slice_dataset, keyword, value)
    return slice_dataset
