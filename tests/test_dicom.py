"""DICOM CT input: Hounsfield units, the CT window, compressed transfer syntaxes, multi-frame,
de-identification and the study reference; through ml_core, the API and the real worker."""

import hashlib
import hmac
import io

import numpy as np
import pydicom
import pytest
from django.conf import settings
from django.core.files.uploadedfile import SimpleUploadedFile
from PIL import Image
from pydicom.data import get_testdata_file
from pydicom.uid import JPEG2000Lossless, RLELossless

from ml_core import dicom
from ml_core.batches import load_intensity
from ml_core.images import decode_image
from ml_core.preprocessing import PreprocessingConfig
from scans.models import Scan
from tests import dicom_files
from tests.conftest import wait_for

LIMIT = 10**7


def test_pixels_become_hounsfield_units_then_the_soft_tissue_window():
    hounsfield = dicom.hounsfield_units(dicom_files.ct_slice(), max_pixels=LIMIT)
    stored = pydicom.dcmread(get_testdata_file("CT_small.dcm")).pixel_array

    np.testing.assert_array_equal(hounsfield, stored.astype(np.float32) - 1024.0)
    pixels = decode_image(dicom_files.ct_slice(), max_pixels=LIMIT).pixels
    expected = np.clip((hounsfield - (40 - 200)) / 400, 0, 1)
    np.testing.assert_allclose(pixels, expected, atol=1e-6)
    assert 0.0 < pixels.mean() < 1.0


def test_the_window_is_part_of_the_stored_preprocessing(tmp_path):
    path = tmp_path / "slice.dcm"
    path.write_bytes(dicom_files.ct_slice())
    soft_tissue = PreprocessingConfig(input_size=32)
    bone = PreprocessingConfig.from_dict(
        {"input_size": 32, "window_width": 1800, "window_level": 400}
    )

    assert bone.window == dicom.CtWindow(1800, 400)
    assert not np.allclose(load_intensity(str(path), soft_tissue), load_intensity(str(path), bone))
    with pytest.raises(ValueError, match="positive"):
        PreprocessingConfig(input_size=32, window_width=0)


@pytest.mark.parametrize("syntax", [RLELossless, JPEG2000Lossless], ids=["rle", "jpeg2000"])
def test_lossless_compressed_slices_decode_to_the_same_hounsfield_units(syntax):
    compressed = dicom_files.ct_compressed(syntax)
    assert pydicom.dcmread(io.BytesIO(compressed)).file_meta.TransferSyntaxUID == syntax

    hounsfield = dicom.hounsfield_units(compressed, max_pixels=LIMIT)

    np.testing.assert_array_equal(hounsfield, dicom_files.ct_hounsfield())


def test_jpeg_ls_decodes_with_the_installed_plugin():
    dataset = pydicom.dcmread(get_testdata_file("MR_small_jpeg_ls_lossless.dcm"))
    dataset.Modality = "CT"
    data = dicom_files.to_bytes(dataset)

    hounsfield = dicom.hounsfield_units(data, max_pixels=LIMIT)

    reference = pydicom.dcmread(get_testdata_file("MR_small.dcm")).pixel_array
    np.testing.assert_array_equal(hounsfield, reference.astype(np.float32))


def test_a_chosen_frame_of_a_multiframe_file_is_decoded():
    for frame in range(3):
        hounsfield = dicom.hounsfield_units(
            dicom_files.ct_multiframe(), max_pixels=LIMIT, frame=frame
        )
        np.testing.assert_array_equal(hounsfield, dicom_files.ct_hounsfield() + 100 * frame)


def test_deidentification_removes_identifying_data_and_keys_the_uids():
    key = b"site key"
    stored = dicom.deidentify(dicom_files.ct_slice(), key=key)

    for text in [*dicom_files.IDENTIFYING_STRINGS, "House", "Wilson", "ACME"]:
        assert text.encode() not in stored.data, text
    dataset = pydicom.dcmread(io.BytesIO(stored.data))
    assert dataset.PatientIdentityRemoved == "YES"
    for keyword in ("PatientName", "PatientID", "PatientBirthDate", "AccessionNumber"):
        assert keyword not in dataset
    assert "RequestAttributesSequence" not in dataset
    assert not any(element.tag.is_private for element in dataset.iterall())
    assert dataset.StudyInstanceUID.startswith("2.25.")
    assert dataset.file_meta.MediaStorageSOPInstanceUID == dataset.SOPInstanceUID
    # Still a valid CT slice with the same pixels.
    hounsfield = dicom.hounsfield_units(stored.data, max_pixels=LIMIT)
    np.testing.assert_array_equal(hounsfield, dicom_files.ct_hounsfield())


def test_the_study_reference_groups_slices_without_revealing_the_study():
    key = b"site key"
    first = dicom.deidentify(dicom_files.ct_slice(instance=1), key=key)
    second = dicom.deidentify(dicom_files.ct_slice(instance=2), key=key)
    other_study = dicom.deidentify(dicom_files.ct_slice(study_uid="1.2.3.999"), key=key)
    other_key = dicom.deidentify(dicom_files.ct_slice(instance=1), key=b"another site")

    assert first.study_reference == second.study_reference
    assert (
        first.study_reference
        == hmac.new(key, dicom_files.STUDY_UID.encode(), hashlib.sha256).hexdigest()
    )
    assert other_study.study_reference != first.study_reference
    assert other_key.study_reference != first.study_reference
    uid = pydicom.dcmread(io.BytesIO(first.data)).StudyInstanceUID
    assert uid == pydicom.dcmread(io.BytesIO(second.data)).StudyInstanceUID
    assert first.data == dicom.deidentify(dicom_files.ct_slice(instance=1), key=key).data


def upload(client, data: bytes, **fields):
    return client.post(
        "/api/scans/",
        {"file": SimpleUploadedFile("IMG0001", data), **fields},
        format="multipart",
    )


@pytest.mark.django_db
def test_a_multiframe_upload_stores_the_chosen_frame_only(
    client_for, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks():
        response = upload(client_for("clinician"), dicom_files.ct_multiframe(), frame=2)

    assert response.status_code == 202, response.content
    stored = Scan.objects.get(pk=response.json()["id"]).file.read()
    assert "NumberOfFrames" not in pydicom.dcmread(io.BytesIO(stored))
    hounsfield = dicom.hounsfield_units(stored, max_pixels=LIMIT)
    np.testing.assert_array_equal(hounsfield, dicom_files.ct_hounsfield() + 200)


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("celery_worker_process")
def test_a_dicom_upload_is_stored_de_identified_classified_and_viewable(client_for, serving_model):
    client = client_for("clinician")

    response = upload(client, dicom_files.ct_slice())

    assert response.status_code == 202, response.content
    scan = Scan.objects.get(pk=response.json()["id"])
    assert (scan.content_type, scan.width, scan.height) == ("application/dicom", 128, 128)
    assert scan.file.name.endswith(".dcm")
    stored = scan.file.read()
    for text in dicom_files.IDENTIFYING_STRINGS:
        assert text.encode() not in stored, text
    assert scan.sha256 == hashlib.sha256(stored).hexdigest()
    assert (
        scan.study_reference
        == hmac.new(
            settings.KIDNEY_STUDY_HASH_KEY.encode(), dicom_files.STUDY_UID.encode(), hashlib.sha256
        ).hexdigest()
    )

    def predicted():
        body = client.get(f"/api/scans/{scan.pk}/").json()
        return body if body["status"] in ("predicted", "failed") else None

    body = wait_for(predicted, timeout=120, message="the DICOM scan to be classified")
    assert body["status"] == "predicted", body
    assert body["study_reference"] == scan.study_reference

    image = client.get(f"/api/scans/{scan.pk}/image/")
    assert image.status_code == 200
    assert image["Content-Type"] == "image/png"
    assert Image.open(io.BytesIO(image.content)).size == (128, 128)


@pytest.mark.django_db
def test_imported_dicom_slices_keep_their_study_together_in_training_splits(tmp_path):
    from django.core.management import call_command

    from ml_core.datasets import block_split
    from retraining.selectors import confirmed_label_entries

    studies = {"normal": ["1.2.826.1.1", "1.2.826.1.2"], "stone": ["1.2.826.1.3", "1.2.826.1.4"]}
    number = 0
    for label, uids in studies.items():
        (tmp_path / label).mkdir()
        for uid in uids:
            for instance in range(1, 7):
                number += 1
                path = tmp_path / label / f"slice-{number}.dcm"
                path.write_bytes(dicom_files.ct_slice(study_uid=uid, instance=instance))

    call_command("import_dataset", str(tmp_path), stdout=io.StringIO(), stderr=io.StringIO())

    entries = confirmed_label_entries(["normal", "stone"])
    assert len(entries) == 24
    assert len({entry.group for entry in entries}) == 4
    assert all(len(entry.group) == 64 for entry in entries)
    kept, held_out = block_split(entries, fraction=0.2, gap=0)
    # 20% of each class is two slices of its later study; the whole study goes with them.
    assert len(held_out) == 12
    assert {entry.group for entry in kept}.isdisjoint({entry.group for entry in held_out})


def test_a_ct_slice_holding_display_values_is_read_as_they_are_not_through_the_window():
    values = (np.arange(128 * 128) % 256).astype(np.uint8).reshape(128, 128)

    def display_values(dataset):
        dataset.set_pixel_data(values, photometric_interpretation="MONOCHROME2", bits_stored=8)
        del dataset.RescaleSlope
        del dataset.RescaleIntercept

    pixels = decode_image(dicom_files.ct_edited(display_values), max_pixels=LIMIT).pixels

    np.testing.assert_allclose(pixels, values / 255.0, atol=1e-6)
    rescaled = decode_image(dicom_files.ct_slice(), max_pixels=LIMIT).pixels
    np.testing.assert_allclose(
        rescaled, dicom.SOFT_TISSUE_WINDOW.apply(dicom_files.ct_hounsfield()), atol=1e-6
    )
