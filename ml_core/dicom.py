"""DICOM CT slices: validation, Hounsfield units, windowing and de-identification.

Everything is checked from the header before pixel data is decoded: modality, pixel data,
frames, size and whether a decoder exists for the transfer syntax.
"""

import hashlib
import hmac
import io
from dataclasses import dataclass

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.pixels import get_decoder, pixel_array
from pydicom.uid import UID

from ml_core.errors import ImageDecodeError, UnsupportedEncoding, require_size

PREAMBLE_LENGTH = 128
MAGIC = b"DICM"
CONTENT_TYPE = "application/dicom"

# Attributes of the DICOM basic de-identification profile (PS3.15 E.1-1) that CT headers
# carry. Every person name (VR PN), date and time (DA, DT, TM) and private element is
# removed as well, wherever it is nested, so this list need not be exhaustive for those.
IDENTIFYING_KEYWORDS = frozenset(
    {
        "AccessionNumber",
        "AdditionalPatientHistory",
        "AdmissionID",
        "AdmittingDiagnosesDescription",
        "BranchOfService",
        "CountryOfResidence",
        "CurrentPatientLocation",
        "DataSetTrailingPadding",
        "DerivationDescription",
        "DeviceSerialNumber",
        "EthnicGroup",
        "ImageComments",
        "InstanceCreatorUID",
        "InstitutionAddress",
        "InstitutionName",
        "InstitutionalDepartmentName",
        "IssuerOfPatientID",
        "MedicalAlerts",
        "MedicalRecordLocator",
        "MilitaryRank",
        "Occupation",
        "OtherPatientIDs",
        "OtherPatientIDsSequence",
        "PatientAddress",
        "PatientAge",
        "PatientComments",
        "PatientID",
        "PatientInsurancePlanCodeSequence",
        "PatientReligiousPreference",
        "PatientSex",
        "PatientSize",
        "PatientTelephoneNumbers",
        "PatientWeight",
        "PerformedProcedureStepID",
        "PerformedProcedureStepDescription",
        "PerformedStationName",
        "ProtocolName",
        "ReasonForStudy",
        "ReferencedImageSequence",
        "ReferencedSOPInstanceUID",
        "ReferencedPatientSequence",
        "ReferencedStudySequence",
        "ReferringPhysicianAddress",
        "ReferringPhysicianTelephoneNumbers",
        "RegionOfResidence",
        "RequestAttributesSequence",
        "RequestedProcedureDescription",
        "RequestedProcedureID",
        "ScheduledProcedureStepID",
        "SeriesDescription",
        "SourceApplicationEntityTitle",
        "SourceImageSequence",
        "StationName",
        "StudyDescription",
        "StudyID",
        "TimezoneOffsetFromUTC",
        "StorageMediaFileSetUID",
    }
)
IDENTIFYING_VRS = frozenset({"PN", "DA", "DT", "TM"})
# Replaced by UIDs derived from a keyed hash: stable for the same input, unlinkable without
# the key.
REPLACED_UIDS = (
    "StudyInstanceUID",
    "SeriesInstanceUID",
    "SOPInstanceUID",
    "FrameOfReferenceUID",
    "IrradiationEventUID",
)
DEIDENTIFICATION_METHOD = "PS3.15 E.1 basic profile; UIDs keyed hashes"  # LO: 64 chars


@dataclass(frozen=True)
class CtWindow:
    """A CT display window in Hounsfield units: level L and width W map L - W/2 .. L + W/2
    to 0 .. 1. The default is the soft-tissue window, where kidneys and stones show."""

    width: float = 400.0
    level: float = 40.0

    def __post_init__(self):
        if not self.width > 0:
            raise ValueError("The window width must be positive.")

    def apply(self, hounsfield: np.ndarray) -> np.ndarray:
        low = self.level - self.width / 2.0
        return np.clip((hounsfield - low) / self.width, 0.0, 1.0).astype(np.float32)


SOFT_TISSUE_WINDOW = CtWindow()
BONE_WINDOW = CtWindow(width=1800.0, level=400.0)
WINDOW_PRESETS = {"soft_tissue": SOFT_TISSUE_WINDOW, "bone": BONE_WINDOW}


def is_dicom(data: bytes) -> bool:
    return data[PREAMBLE_LENGTH : PREAMBLE_LENGTH + 4] == MAGIC


def hounsfield_units(
    data: bytes, *, max_pixels: int, min_side: int = 1, frame: int | None = None
) -> np.ndarray:
    """One CT slice in Hounsfield units (float32, rows x columns).

    A multi-frame file needs `frame` (0-based). Raises ImageDecodeError for what cannot be
    accepted, ImageTooLarge before decoding an oversized image and UnsupportedEncoding when no
    decoder is installed for the pixel data's encoding.
    """
    dataset, stored = _stored_pixels(data, max_pixels=max_pixels, min_side=min_side, frame=frame)
    slope, intercept = _rescale(dataset, frame or 0)
    return stored.astype(np.float32) * slope + intercept


def slice_intensity(
    data: bytes,
    *,
    window: CtWindow,
    max_pixels: int,
    min_side: int = 1,
    frame: int | None = None,
) -> np.ndarray:
    """One CT slice as intensity in [0, 1]: Hounsfield units seen through `window`. A slice
    whose pixels are display values already (8 bits stored and no rescale anywhere, as a CT
    slice made from a JPEG export is) is scaled as it is: a CT window over values that are
    not Hounsfield units would wash it out. Raises as hounsfield_units does."""
    dataset, stored = _stored_pixels(data, max_pixels=max_pixels, min_side=min_side, frame=frame)
    if _holds_display_values(dataset):
        top = float(2 ** int(dataset.get("BitsStored", 8) or 8) - 1)
        return np.clip(stored.astype(np.float32) / top, 0.0, 1.0)
    slope, intercept = _rescale(dataset, frame or 0)
    return window.apply(stored.astype(np.float32) * slope + intercept)


def _stored_pixels(
    data: bytes, *, max_pixels: int, min_side: int, frame: int | None
) -> tuple[Dataset, np.ndarray]:
    dataset = _read(data)
    frames = _validate(dataset, max_pixels=max_pixels, min_side=min_side, frame=frame)
    try:
        stored = pixel_array(io.BytesIO(data), index=frame if frames > 1 else None)
    except Exception as error:  # decoders raise anything from ValueError to struct.error
        raise ImageDecodeError(f"The DICOM pixel data is truncated or corrupt ({error}).") from None
    if stored.shape != (dataset.Rows, dataset.Columns):
        raise ImageDecodeError(
            f"The DICOM pixel data has shape {stored.shape}; one slice expected."
        )
    return dataset, stored


def _holds_display_values(dataset: Dataset) -> bool:
    try:
        eight_bits = int(dataset.get("BitsStored", 16) or 16) <= 8
    except (TypeError, ValueError):
        return False
    rescaled = "RescaleSlope" in dataset or "RescaleIntercept" in dataset
    for sequence in ("SharedFunctionalGroupsSequence", "PerFrameFunctionalGroupsSequence"):
        for group in dataset.get(sequence) or []:
            rescaled |= "PixelValueTransformationSequence" in group
    return eight_bits and not rescaled


def _read(data: bytes) -> Dataset:
    try:
        return pydicom.dcmread(io.BytesIO(data))
    except InvalidDicomError:
        raise ImageDecodeError("The file is not a valid DICOM Part 10 file.") from None
    except Exception as error:  # a corrupt header can fail anywhere in the parser
        raise ImageDecodeError(f"The DICOM header is corrupt ({error}).") from None


def _validate(dataset: Dataset, *, max_pixels: int, min_side: int, frame: int | None) -> int:
    """Check the header; return the number of frames."""
    try:
        modality = str(dataset.get("Modality", "") or "")
        rows, columns = int(dataset.get("Rows", 0) or 0), int(dataset.get("Columns", 0) or 0)
        samples = int(dataset.get("SamplesPerPixel", 1) or 1)
        frames = int(dataset.get("NumberOfFrames", 1) or 1)
    except (TypeError, ValueError) as error:
        raise ImageDecodeError(f"The DICOM header has an invalid value ({error}).") from None
    if modality != "CT":
        raise ImageDecodeError(
            f"The DICOM modality is {modality or 'missing'}; only CT (Modality CT) is accepted."
        )
    if "PixelData" not in dataset:
        raise ImageDecodeError("The DICOM file has no pixel data.")
    require_size(columns, rows, max_pixels=max_pixels, min_side=min_side)
    if samples != 1:
        raise ImageDecodeError("The DICOM image has colour samples; CT slices are monochrome.")
    if frames > 1 and frame is None:
        raise ImageDecodeError(
            f"The DICOM file has {frames} frames; choose one with the `frame` field (0-based)."
        )
    if frame is not None and not 0 <= frame < frames:
        raise ImageDecodeError(f"Frame {frame} does not exist; the file has {frames} frame(s).")
    _require_decoder(dataset)
    return frames


def _require_decoder(dataset: Dataset) -> None:
    syntax = UID(str(dataset.file_meta.get("TransferSyntaxUID", "")))
    if not syntax:
        raise ImageDecodeError("The DICOM file declares no transfer syntax.")
    if not syntax.is_transfer_syntax:
        raise UnsupportedEncoding(
            f"The DICOM transfer syntax {syntax} is not one this service knows."
        )
    if not syntax.is_compressed:
        return
    try:
        decoder = get_decoder(syntax)
    except NotImplementedError:
        raise UnsupportedEncoding(
            f"The DICOM pixel data is encoded as {syntax.name}, which this service cannot "
            "decode; send it uncompressed or JPEG / JPEG-LS / JPEG 2000 / RLE compressed."
        ) from None
    if not decoder.is_available:
        raise UnsupportedEncoding(
            f"No decoder for {syntax.name} is installed on this server; send the file uncompressed."
        )


def _rescale(dataset: Dataset, frame: int) -> tuple[float, float]:
    """RescaleSlope/Intercept: top level (classic CT) or the functional groups (enhanced CT)."""
    candidates = [dataset]
    for sequence, index in (
        ("SharedFunctionalGroupsSequence", 0),
        ("PerFrameFunctionalGroupsSequence", frame),
    ):
        groups = dataset.get(sequence)
        if groups and len(groups) > index:
            candidates += list(groups[index].get("PixelValueTransformationSequence", []))
    for item in candidates:
        if "RescaleSlope" in item or "RescaleIntercept" in item:
            try:
                slope = float(item.get("RescaleSlope", 1) or 1)
                intercept = float(item.get("RescaleIntercept", 0) or 0)
            except (TypeError, ValueError):
                raise ImageDecodeError("The DICOM rescale slope or intercept is invalid.") from None
            if not (np.isfinite(slope) and np.isfinite(intercept)):
                raise ImageDecodeError("The DICOM rescale slope or intercept is not finite.")
            return slope, intercept
    return 1.0, 0.0


@dataclass(frozen=True)
class DeidentifiedDicom:
    data: bytes
    # A keyed hash of the study instance UID ("" when the file has none): groups the slices
    # of one study without revealing it.
    study_reference: str


def study_reference(study_uid: str, *, key: bytes) -> str:
    return hmac.new(key, study_uid.encode(), hashlib.sha256).hexdigest() if study_uid else ""


def deidentify(data: bytes, *, key: bytes, frame: int | None = None) -> DeidentifiedDicom:
    """The file to store: identifying attributes removed, UIDs replaced by keyed hashes.

    For a multi-frame file only `frame` is kept, as a single uncompressed slice. Call it on
    input that hounsfield_units accepted.
    """
    dataset = _read(data)
    reference = study_reference(str(dataset.get("StudyInstanceUID", "")), key=key)
    if int(dataset.get("NumberOfFrames", 1) or 1) > 1:
        _keep_one_frame(dataset, data, frame or 0)
    dataset.remove_private_tags()
    dataset.walk(_remove_identifying)
    dataset.file_meta.walk(_remove_identifying)
    for keyword in REPLACED_UIDS:
        if keyword in dataset:
            setattr(dataset, keyword, keyed_uid(str(dataset.data_element(keyword).value), key))
    if "SOPInstanceUID" in dataset:
        dataset.file_meta.MediaStorageSOPInstanceUID = dataset.SOPInstanceUID
    dataset.PatientIdentityRemoved = "YES"
    dataset.DeidentificationMethod = DEIDENTIFICATION_METHOD
    output = io.BytesIO()
    dataset.save_as(output, enforce_file_format=True)
    return DeidentifiedDicom(data=output.getvalue(), study_reference=reference)


def _remove_identifying(dataset: Dataset, element) -> None:
    if element.keyword in IDENTIFYING_KEYWORDS or element.VR in IDENTIFYING_VRS:
        del dataset[element.tag]


def keyed_uid(uid: str, key: bytes) -> str:
    """A UID in the 2.25 (UUID as an integer) form, from 128 bits of a keyed hash."""
    digest = hmac.new(key, uid.encode(), hashlib.sha256).digest()
    return f"2.25.{int.from_bytes(digest[:16], 'big')}"


def _keep_one_frame(dataset: Dataset, data: bytes, frame: int) -> None:
    slope, intercept = _rescale(dataset, frame)
    pixels = pixel_array(io.BytesIO(data), index=frame)
    for sequence in ("PerFrameFunctionalGroupsSequence", "SharedFunctionalGroupsSequence"):
        if sequence in dataset:
            del dataset[sequence]
    del dataset.NumberOfFrames
    dataset.set_pixel_data(
        pixels,
        photometric_interpretation=str(dataset.get("PhotometricInterpretation", "MONOCHROME2")),
        bits_stored=int(dataset.get("BitsStored", pixels.dtype.itemsize * 8)),
    )
    dataset.RescaleSlope, dataset.RescaleIntercept = slope, intercept
