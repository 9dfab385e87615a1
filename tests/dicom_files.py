"""DICOM test files made from pydicom's real CT slice (CT_small.dcm, 128x128, 16-bit, HU =
stored - 1024), with identifying attributes of our own so de-identification can be checked."""

import io

import numpy as np
import pydicom
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.uid import generate_uid

PATIENT_NAME = "Doe^Jane^Q"
PATIENT_ID = "MRN-4471-2093"
BIRTH_DATE = "19580412"
ACCESSION = "ACC-99812"
INSTITUTION = "St Elsewhere General"
STUDY_UID = "1.2.826.0.1.3680043.2.1125.7.444.1"
# Stones as large as the study model's (tests/conftest.py): a tiny model learns them at once.
STUDY_STONE_RADIUS = (0.08, 0.12)
IDENTIFYING_STRINGS = [PATIENT_NAME, PATIENT_ID, BIRTH_DATE, ACCESSION, INSTITUTION, STUDY_UID]


def ct_dataset(*, study_uid: str = STUDY_UID, instance: int = 1) -> Dataset:
    dataset = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    dataset.PatientName = PATIENT_NAME
    dataset.PatientID = PATIENT_ID
    dataset.PatientBirthDate = BIRTH_DATE
    dataset.AccessionNumber = ACCESSION
    dataset.InstitutionName = INSTITUTION
    dataset.ReferringPhysicianName = "House^Gregory"
    dataset.StudyInstanceUID = study_uid
    dataset.SOPInstanceUID = generate_uid(entropy_srcs=[study_uid, str(instance)])
    dataset.file_meta.MediaStorageSOPInstanceUID = dataset.SOPInstanceUID
    dataset.InstanceNumber = instance
    # A private element of the kind scanners use for free text.
    block = dataset.private_block(0x0011, "ACME SCANNER", create=True)
    block.add_new(0x01, "LO", f"{PATIENT_NAME} {PATIENT_ID}")
    # Nested identifying data.
    request = Dataset()
    request.RequestingPhysician = "Wilson^James"
    request.AccessionNumber = ACCESSION
    dataset.RequestAttributesSequence = Sequence([request])
    return dataset


def to_bytes(dataset: Dataset) -> bytes:
    output = io.BytesIO()
    dataset.save_as(output, enforce_file_format=True)
    return output.getvalue()


def ct_slice(**options) -> bytes:
    return to_bytes(ct_dataset(**options))


def ct_hounsfield() -> np.ndarray:
    dataset = ct_dataset()
    return dataset.pixel_array.astype(np.float32) * float(dataset.RescaleSlope) + float(
        dataset.RescaleIntercept
    )


def ct_compressed(transfer_syntax) -> bytes:
    dataset = ct_dataset()
    dataset.compress(transfer_syntax)
    return to_bytes(dataset)


def ct_multiframe(frames: int = 3) -> bytes:
    """A multi-frame CT file; frame k holds the slice's stored values plus k * 100."""
    dataset = ct_dataset()
    pixels = dataset.pixel_array
    stack = np.stack([pixels + 100 * index for index in range(frames)]).astype(pixels.dtype)
    dataset.set_pixel_data(stack, photometric_interpretation="MONOCHROME2", bits_stored=16)
    return to_bytes(dataset)


def ct_edited(edit) -> bytes:
    """CT_small with `edit(dataset)` applied before writing."""
    dataset = ct_dataset()
    edit(dataset)
    return to_bytes(dataset)


def ct_declaring(transfer_syntax_uid: str) -> bytes:
    """Uncompressed pixels wrapped as if encoded with another transfer syntax (encapsulated)."""
    from pydicom.encaps import encapsulate

    dataset = ct_dataset()
    dataset.PixelData = encapsulate([dataset.PixelData])
    dataset["PixelData"].VR = "OB"
    dataset.file_meta.TransferSyntaxUID = transfer_syntax_uid
    return to_bytes(dataset)


def phantom_study(
    count: int,
    *,
    stone_at: tuple[int, ...] = (),
    study_uid: str | None = None,
    patient_id: str = PATIENT_ID,
    seed: int = 0,
    size: int = 32,
    stone_radius: tuple[float, float] = STUDY_STONE_RADIUS,
) -> list[bytes]:
    """A CT study of `count` phantom slices (ml_core.phantoms, `size` px, with stones as large
    as the study model's, tests/conftest.py) in one series, with a stone on the slices
    `stone_at`, 2.5 mm apart along the patient axis, in shuffled order. The soft-tissue window
    maps the phantom's intensity back exactly."""
    from ml_core.phantoms import draw_phantom

    study_uid = study_uid or generate_uid()
    series_uid = generate_uid(entropy_srcs=[study_uid, "series"])
    rng = np.random.default_rng(seed)
    slices = []
    for index in range(count):
        dataset = ct_dataset(study_uid=study_uid, instance=index + 1)
        dataset.PatientID = patient_id
        dataset.SeriesInstanceUID = series_uid
        dataset.Rows = dataset.Columns = size
        dataset.ImagePositionPatient = [-64.0, -64.0, -2.5 * index]
        dataset.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        intensity = draw_phantom(
            rng, size=size, with_stone=index in stone_at, stone_radius=stone_radius
        )
        hounsfield = intensity * 400.0 - 160.0  # the inverse of the soft-tissue window
        stored = np.round(hounsfield - float(dataset.RescaleIntercept)).astype(np.int16)
        dataset.PixelData = stored.tobytes()
        slices.append(dataset)
    return [to_bytes(slices[index]) for index in rng.permutation(count)]
