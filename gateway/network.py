"""The DICOM network: the storage listener (C-STORE and C-ECHO SCP, with its association
policy) and the sender of results (C-STORE SCU)."""

import ipaddress
import logging

from django.conf import settings
from django.db import connections
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian
from pynetdicom import AE, AllStoragePresentationContexts, evt
from pynetdicom.sop_class import Verification

from gateway.services import OUT_OF_RESOURCES, SUCCESS, allowed_callers, instance_receive

logger = logging.getLogger(__name__)

# C-STORE statuses a sender may take as stored (PS3.4 B.2.3: success and the warnings).
STORED = {0x0000, 0xB000, 0xB006, 0xB007}


class ListenerMisconfigured(ValueError):
    pass


def caller_titles() -> list[str]:
    """The AE titles allowed to call; with none named, any caller, but only on loopback."""
    titles = list(allowed_callers())
    if not titles and not ipaddress.ip_address(settings.KIDNEY_DICOM_HOST).is_loopback:
        raise ListenerMisconfigured(
            "KIDNEY_DICOM_CALLING_AE_TITLES names no caller, and the listener would accept any "
            f"on {settings.KIDNEY_DICOM_HOST}: name the PACS' AE titles, or listen on loopback."
        )
    return titles


def handle_store(event) -> int:
    caller = event.assoc.requestor.ae_title.strip()
    try:
        received = instance_receive(data=event.encoded_dataset(), calling_ae_title=caller)
    except Exception:
        # The database or the store is unreachable: the PACS keeps the instance and retries.
        logger.exception("Instance from %s could not be stored", caller)
        return OUT_OF_RESOURCES
    if received.status != SUCCESS:
        logger.warning(
            "Refused an instance from %s with status 0x%04X: %s",
            caller,
            received.status,
            received.reason,
        )
    return received.status


def handle_echo(event) -> int:
    return SUCCESS


def _close_database(event) -> None:
    """Each association runs in a thread of its own: its database connection goes with it."""
    connections.close_all()


def listener_start():
    """Start the storage listener in the background; returns the server (shutdown() stops it)."""
    ae = AE(ae_title=settings.KIDNEY_DICOM_AE_TITLE)
    ae.supported_contexts = AllStoragePresentationContexts
    ae.add_supported_context(Verification)
    ae.require_calling_aet = caller_titles()
    handlers = [
        (evt.EVT_C_STORE, handle_store),
        (evt.EVT_C_ECHO, handle_echo),
        (evt.EVT_CONN_CLOSE, _close_database),
    ]
    return ae.start_server(
        (settings.KIDNEY_DICOM_HOST, settings.KIDNEY_DICOM_PORT),
        block=False,
        evt_handlers=handlers,
    )


def parse_destination(destination: str) -> tuple[str, str, int]:
    """ "AE@host:port" -> (AE title, host, port)."""
    title, _, address = destination.partition("@")
    host, _, port = address.rpartition(":")
    if not title or not host or not port.isdigit():
        raise ValueError(f"A destination is AE@host:port, not {destination!r}.")
    return title, host, int(port)


def send(destination: str, datasets: list) -> None:
    """C-STORE every dataset to the destination in one association; raises ConnectionError
    unless every one is stored."""
    title, host, port = parse_destination(destination)
    ae = AE(ae_title=settings.KIDNEY_DICOM_AE_TITLE)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 30
    for sop_class in dict.fromkeys(str(dataset.SOPClassUID) for dataset in datasets):
        ae.add_requested_context(sop_class, [ExplicitVRLittleEndian, ImplicitVRLittleEndian])
    association = ae.associate(host, port, ae_title=title)
    if not association.is_established:
        raise ConnectionError(f"{destination} did not accept an association.")
    try:
        for dataset in datasets:
            status = association.send_c_store(dataset)
            code = getattr(status, "Status", None)
            if code not in STORED:
                raise ConnectionError(
                    f"{destination} answered C-STORE with "
                    f"{'no status' if code is None else f'status 0x{code:04X}'}."
                )
    finally:
        if association.is_established:
            association.release()
