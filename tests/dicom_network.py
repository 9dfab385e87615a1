"""Real DICOM peers for the gateway's tests and bench/dicom_study.py: Debian's Orthanc as a
plain process from a JSON configuration, the gateway (manage.py dicom_gateway) as a process,
and a DICOM client and a storage server of pynetdicom's."""

import io
import json
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pydicom
from pynetdicom import AE, AllStoragePresentationContexts, evt
from pynetdicom.sop_class import Verification

from tests.processes import Processes, _accepts, free_port, wait_until

ORTHANC = "/usr/sbin/Orthanc"
GATEWAY_AE = "KIDNEY"


class Orthanc:
    """A PACS: Orthanc on its own ports and folder, knowing the gateway as modality `kidney`."""

    def __init__(self, processes: Processes, folder: Path, *, gateway_port: int, name="orthanc"):
        self.http_port, self.dicom_port = free_port(), free_port()
        self.url = f"http://127.0.0.1:{self.http_port}"
        configuration = {
            "Name": name,
            "StorageDirectory": str(folder / "storage"),
            "IndexDirectory": str(folder / "index"),
            "HttpPort": self.http_port,
            "DicomPort": self.dicom_port,
            "DicomAet": "ORTHANC",
            "RemoteAccessAllowed": False,
            "AuthenticationEnabled": False,
            "HttpServerEnabled": True,
            "DicomCheckCalledAet": False,
            "DicomModalities": {"kidney": [GATEWAY_AE, "127.0.0.1", gateway_port]},
            "Plugins": [],
            "StableAge": 1,
        }
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "orthanc.json").write_text(json.dumps(configuration))
        processes.start(name, [ORTHANC, str(folder / "orthanc.json")])
        wait_until(lambda: _accepts(self.http_port), timeout=60, what="Orthanc's HTTP port")
        wait_until(lambda: _accepts(self.dicom_port), timeout=60, what="Orthanc's DICOM port")

    @property
    def destination(self) -> str:
        return f"ORTHANC@127.0.0.1:{self.dicom_port}"

    def request(self, method: str, path: str, body: bytes | dict | None = None):
        data = json.dumps(body).encode() if isinstance(body, dict) else body
        request = urllib.request.Request(self.url + path, data=data, method=method)
        with urllib.request.urlopen(request, timeout=300) as response:
            payload = response.read()
        return json.loads(payload) if payload[:1] in (b"{", b"[") else payload

    def store(self, instances: list[bytes]) -> str:
        """Put instances into Orthanc; returns the Orthanc id of their study."""
        study = None
        for data in instances:
            study = self.request("POST", "/instances", data)["ParentStudy"]
        return study

    def send_to_gateway(self, study: str) -> dict:
        """Orthanc's C-STORE of a whole study to the gateway (its REST /modalities/…/store)."""
        return self.request("POST", "/modalities/kidney/store", {"Resources": [study]})

    def study_instances(self, study: str) -> list[pydicom.Dataset]:
        """Every instance of the study as Orthanc holds it now (headers)."""
        datasets = []
        for instance in self.request("GET", f"/studies/{study}/instances"):
            data = self.request("GET", f"/instances/{instance['ID']}/file")
            datasets.append(pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True))
        return datasets


def start_gateway(processes: Processes, environment: dict, *, name="gateway", **settings) -> int:
    """manage.py dicom_gateway as a process; returns its port once it listens."""
    port = int(settings.pop("KIDNEY_DICOM_PORT", 0)) or free_port()
    overrides = {"KIDNEY_DICOM_PORT": str(port), **{k: str(v) for k, v in settings.items()}}
    command = [sys.executable, "manage.py", "dicom_gateway"]
    process = processes.start(name, command, **environment, **overrides)

    def listening():
        if process.poll() is not None:
            raise RuntimeError(f"The gateway exited:\n{processes.log(name)}")
        return _accepts(port)

    wait_until(listening, timeout=90, what="the DICOM gateway")
    return port


def c_store(port: int, instances: list, *, calling: str = "TESTSCU", called: str = GATEWAY_AE):
    """Send instances (bytes or datasets) in one association; returns the statuses (None when
    the association was refused)."""
    ae = AE(ae_title=calling)
    datasets = [
        pydicom.dcmread(io.BytesIO(item)) if isinstance(item, bytes) else item for item in instances
    ]
    for sop_class in dict.fromkeys(str(dataset.SOPClassUID) for dataset in datasets):
        ae.add_requested_context(sop_class)
    association = ae.associate("127.0.0.1", port, ae_title=called)
    if not association.is_established:
        return None
    try:
        return [int(association.send_c_store(dataset).Status) for dataset in datasets]
    finally:
        association.release()


def storescu(port: int, instances: list[bytes], folder: Path, *, calling: str = "TESTSCU"):
    """dcmtk's storescu sends the instances (written to `folder`) in one association."""
    import subprocess

    folder.mkdir(parents=True, exist_ok=True)
    for number, data in enumerate(instances):
        (folder / f"{number:05d}.dcm").write_bytes(data)
    command = ["storescu", "-aet", calling, "-aec", GATEWAY_AE, "127.0.0.1", str(port)]
    subprocess.run([*command, "+sd", str(folder)], check=True, capture_output=True, timeout=300)


def c_echo(port: int, *, calling: str) -> int | None:
    ae = AE(ae_title=calling)
    ae.add_requested_context(Verification)
    association = ae.associate("127.0.0.1", port, ae_title=GATEWAY_AE)
    if not association.is_established:
        return None
    try:
        return int(association.send_c_echo().Status)
    finally:
        association.release()


class StorageServer:
    """A destination that keeps every instance it is sent (by SOP instance UID, with how
    many times it came), and can be started and stopped on the same port."""

    def __init__(self):
        self.port = free_port()
        self.received: dict[str, list[pydicom.Dataset]] = {}
        self.lock = threading.Lock()
        self.server = None

    def _store(self, event):
        dataset = event.dataset
        dataset.file_meta = event.file_meta
        with self.lock:
            self.received.setdefault(str(dataset.SOPInstanceUID), []).append(dataset)
        return 0x0000

    def start(self):
        ae = AE(ae_title="PACS")
        ae.supported_contexts = AllStoragePresentationContexts
        self.server = ae.start_server(
            ("127.0.0.1", self.port), block=False, evt_handlers=[(evt.EVT_C_STORE, self._store)]
        )
        time.sleep(0.2)

    def stop(self):
        if self.server is not None:
            self.server.shutdown()
            self.server = None

    @property
    def destination(self) -> str:
        return f"PACS@127.0.0.1:{self.port}"
