"""The DICOM gateway with real processes: manage.py dicom_gateway, a Celery worker on Redis,
Debian's Orthanc as the PACS, pynetdicom as another sender and destination."""

import os
import time

import pytest
from pydicom.uid import MRImageStorage

from gateway.models import ResultDelivery, StudyIdentity
from ml_core.evidence import METHOD as EVIDENCE_METHOD
from scans.models import DECISION_SUPPORT_NOTICE, Scan, Study
from tests import dicom_files
from tests.conftest import TEST_DATA_DIR, _test_database_url, wait_for
from tests.dicom_network import (
    Orthanc,
    StorageServer,
    c_echo,
    c_store,
    start_gateway,
    storescu,
)
from tests.processes import Processes, free_port

pytestmark = pytest.mark.django_db(transaction=True)

GATEWAY_SETTINGS = {
    "KIDNEY_DICOM_CALLING_AE_TITLES": "TESTSCU,ORTHANC=Orthanc General",
    "KIDNEY_DICOM_STUDY_QUIET_SECONDS": "1.5",
    "KIDNEY_DICOM_POLL_SECONDS": "0.3",
    "KIDNEY_DICOM_RETRY_SECONDS": "0.5",
    "KIDNEY_DICOM_RETRY_MAX_SECONDS": "2",
}
TRIAGE_SECONDS = 180


@pytest.fixture
def processes(tmp_path):
    environment = dict(os.environ, DATABASE_URL=_test_database_url())
    with Processes(environment, tmp_path / "logs") as running:
        running.environment = environment
        yield running


def gateway(processes, **settings_) -> int:
    return start_gateway(processes, processes.environment, **{**GATEWAY_SETTINGS, **settings_})


def triaged(count: int = 1) -> list[Study]:
    studies = list(Study.objects.filter(status=Study.Status.TRIAGED).order_by("created"))
    return studies if len(studies) >= count else []


def slice_index(scan: Scan) -> int:
    """phantom_study puts slice k at -2.5 k mm along the patient axis."""
    return round(-scan.slice_position / 2.5)


def files_under(folder) -> list:
    return [path for path in folder.rglob("*") if path.is_file()]


def assert_no_patient_data_stored():
    for path in files_under(TEST_DATA_DIR / "media"):
        content = path.read_bytes()
        for identifier in dicom_files.IDENTIFYING_STRINGS:
            assert identifier.encode() not in content, f"{identifier} in {path.name}"
    for study in Study.objects.all():
        assert not set(dicom_files.IDENTIFYING_STRINGS) & {
            study.study_reference,
            study.calling_ae_title,
        }
    for kept in StudyIdentity.objects.all():
        for identifier in dicom_files.IDENTIFYING_STRINGS:
            assert identifier not in kept.ciphertext


def test_orthanc_sends_a_study_and_finds_the_results_back_in_it(
    processes, celery_worker_process, serving_study_model, tmp_path
):
    gateway_port = free_port()
    orthanc = Orthanc(processes, tmp_path / "orthanc", gateway_port=gateway_port)
    gateway(
        processes,
        KIDNEY_DICOM_PORT=gateway_port,
        KIDNEY_DICOM_DESTINATION=orthanc.destination,
        KIDNEY_DICOM_IDENTITY_RETENTION_HOURS=0,
    )
    instances = dicom_files.phantom_study(12, stone_at=(5, 6, 7), study_uid=dicom_files.STUDY_UID)
    orthanc_study = orthanc.store(instances)

    orthanc.send_to_gateway(orthanc_study)

    (study,) = wait_for(triaged, timeout=TRIAGE_SECONDS, message="the study's verdict")
    assert study.slices.count() == 12
    assert study.verdict == "stone"
    assert study.organisation.name == "Orthanc General"
    assert {slice_index(Scan.objects.get(pk=pk)) for pk in study.key_slices[:3]} == {5, 6, 7}
    # The key images carry the key slices' maps, made by the current method.
    assert {Scan.objects.get(pk=pk).prediction.heatmap_method for pk in study.key_slices} == {
        EVIDENCE_METHOD
    }
    wait_for(
        lambda: ResultDelivery.objects.filter(status="delivered").exists(),
        timeout=60,
        message="the results delivered",
    )
    results = [d for d in orthanc.study_instances(orthanc_study) if d.Modality != "CT"]
    reports = [d for d in results if d.Modality == "SR"]
    key_images = [d for d in results if d.Modality != "SR"]
    assert len(reports) == 1
    assert len(key_images) == len(study.key_slices)
    for result in results:
        assert result.StudyInstanceUID == dicom_files.STUDY_UID
        assert result.PatientID == dicom_files.PATIENT_ID
        assert str(result.PatientName) == dicom_files.PATIENT_NAME
        assert result.AccessionNumber == dicom_files.ACCESSION
    report_text = orthanc.request(
        "GET", f"/instances/{_orthanc_id(orthanc, reports[0])}/file"
    ).decode("latin-1")
    assert DECISION_SUPPORT_NOTICE in report_text
    assert "stone suspected" in report_text
    original_uids = {d.SOPInstanceUID for d in orthanc.study_instances(orthanc_study)}
    referenced = reports[0].CurrentRequestedProcedureEvidenceSequence[0]
    referenced_uids = {
        item.ReferencedSOPInstanceUID
        for series in referenced.ReferencedSeriesSequence
        for item in series.ReferencedSOPSequence
    }
    assert referenced_uids
    assert referenced_uids <= original_uids
    assert_no_patient_data_stored()
    wait_for(
        lambda: not StudyIdentity.objects.exists(),
        timeout=10,
        message="the identity erased once delivered and its retention passed",
    )


def _orthanc_id(orthanc: Orthanc, dataset) -> str:
    (found,) = orthanc.request(
        "POST",
        "/tools/find",
        {"Level": "Instance", "Query": {"SOPInstanceUID": dataset.SOPInstanceUID}},
    )
    return found


def test_a_caller_not_on_the_list_is_refused(processes):
    port = gateway(processes)

    assert c_echo(port, calling="TESTSCU") == 0x0000
    assert c_echo(port, calling="INTRUDER") is None
    assert c_store(port, dicom_files.phantom_study(1), calling="INTRUDER") is None
    assert not Scan.objects.exists()


def test_a_non_ct_and_a_broken_instance_are_refused_and_nothing_is_stored(processes):
    port = gateway(processes)
    files_before = files_under(TEST_DATA_DIR / "media")

    def as_mr(dataset):
        dataset.Modality = "MR"
        dataset.SOPClassUID = MRImageStorage

    def truncated(dataset):
        dataset.PixelData = dataset.PixelData[:100]

    statuses = c_store(
        port, [dicom_files.ct_edited(as_mr), dicom_files.ct_edited(truncated)], calling="TESTSCU"
    )

    assert statuses[0] == 0xA900
    assert 0xC000 <= statuses[1] <= 0xCFFF
    assert not Scan.objects.exists()
    assert not Study.objects.exists()
    assert not StudyIdentity.objects.exists()
    assert files_under(TEST_DATA_DIR / "media") == files_before
    assert dicom_files.PATIENT_ID not in processes.log("gateway")


def test_two_studies_interleaved_over_two_associations_and_an_instance_sent_twice(
    processes, celery_worker_process, serving_study_model
):
    import threading

    port = gateway(processes)
    first = dicom_files.phantom_study(6, seed=1)
    second = dicom_files.phantom_study(6, seed=2)
    halves = [
        [instance for pair in zip(first[:3], second[:3], strict=True) for instance in pair],
        [instance for pair in zip(first[3:], second[3:], strict=True) for instance in pair]
        + [first[0]],
    ]
    statuses = []
    senders = [
        threading.Thread(target=lambda half=half: statuses.append(c_store(port, half)))
        for half in halves
    ]
    for sender in senders:
        sender.start()
    for sender in senders:
        sender.join()

    assert sorted(len(s) for s in statuses) == [6, 7]
    assert all(status == 0 for s in statuses for status in s)
    studies = wait_for(lambda: triaged(2), timeout=TRIAGE_SECONDS, message="both verdicts")
    assert [study.slices.count() for study in studies] == [6, 6]
    assert Scan.objects.count() == 12


def test_a_stone_on_3_slices_of_100_is_flagged_and_scattered_high_slices_are_not(
    processes, celery_worker_process, serving_study_model, tmp_path
):
    port = gateway(processes)
    stone = dicom_files.phantom_study(100, stone_at=(40, 41, 42), seed=3)
    scattered = dicom_files.phantom_study(100, stone_at=(10, 35, 60, 85), seed=4)

    storescu(port, stone, tmp_path / "stone")  # dcmtk's client
    c_store(port, scattered)

    flagged, not_flagged = wait_for(lambda: triaged(2), timeout=TRIAGE_SECONDS, message="verdicts")
    if flagged.slices.filter(slice_position=-2.5 * 40).count() == 0:
        flagged, not_flagged = not_flagged, flagged
    assert flagged.verdict == "stone"
    assert flagged.score >= flagged.threshold
    key = [slice_index(Scan.objects.get(pk=pk)) for pk in flagged.key_slices]
    assert set(key[:3]) == {40, 41, 42}
    assert not_flagged.verdict == "normal"
    assert not_flagged.score < not_flagged.threshold
    single_high = {
        slice_index(scan): scan.prediction.abnormal_score
        for scan in not_flagged.slices.select_related("prediction")
    }
    assert min(single_high[k] for k in (10, 35, 60, 85)) > max(
        score for k, score in single_high.items() if k not in (10, 35, 60, 85)
    )


def test_results_wait_for_a_destination_that_is_down_and_arrive_once(
    processes, celery_worker_process, serving_study_model
):
    destination = StorageServer()
    port = gateway(processes, KIDNEY_DICOM_DESTINATION=destination.destination)
    c_store(port, dicom_files.phantom_study(6, stone_at=(2, 3, 4), seed=5))
    (study,) = wait_for(triaged, timeout=TRIAGE_SECONDS, message="the verdict")
    wait_for(
        lambda: ResultDelivery.objects.filter(attempts__gte=2, status="pending").exists(),
        timeout=30,
        message="failed attempts while the destination is down",
    )

    processes.kill("gateway")  # the service restarts too, with the outbox as it was
    destination.start()
    try:
        gateway(processes, KIDNEY_DICOM_PORT=port, KIDNEY_DICOM_DESTINATION=destination.destination)
        wait_for(
            lambda: ResultDelivery.objects.filter(status="delivered").exists(),
            timeout=60,
            message="the results delivered",
        )
        time.sleep(2 * float(GATEWAY_SETTINGS["KIDNEY_DICOM_POLL_SECONDS"]) + 1)
    finally:
        destination.stop()
    study.refresh_from_db()
    assert len(destination.received) == 1 + len(study.key_slices)
    assert all(len(copies) == 1 for copies in destination.received.values())
    delivery = ResultDelivery.objects.get()
    assert delivery.attempts >= 3
    assert StudyIdentity.objects.get(study=study).erase_after is not None


def test_instances_after_the_verdict_open_the_study_again_and_new_results_follow(
    processes, celery_worker_process, serving_study_model
):
    destination = StorageServer()
    destination.start()
    try:
        port = gateway(processes, KIDNEY_DICOM_DESTINATION=destination.destination)
        instances = dicom_files.phantom_study(6, seed=6)
        c_store(port, instances[:4])
        (study,) = wait_for(triaged, timeout=TRIAGE_SECONDS, message="the first verdict")
        wait_for(
            lambda: ResultDelivery.objects.filter(status="delivered").count() == 1,
            timeout=60,
            message="the first results",
        )

        c_store(port, instances[4:] + instances[:1])  # two new instances and one again

        wait_for(
            lambda: ResultDelivery.objects.filter(status="delivered").count() == 2,
            timeout=TRIAGE_SECONDS,
            message="the second results",
        )
    finally:
        destination.stop()
    study.refresh_from_db()
    assert study.triage_round == 2
    assert study.slices.count() == 6
    reports = [d for copies in destination.received.values() for d in copies if d.Modality == "SR"]
    assert len(reports) == 2
    assert reports[0].SOPInstanceUID != reports[1].SOPInstanceUID
