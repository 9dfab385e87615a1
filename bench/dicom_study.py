"""A whole study over the DICOM network, end to end: Orthanc (the PACS) sends a study of
--slices CT slices to the gateway, the inference worker classifies it, and the results (the
structured report and the key images) arrive back in Orthanc. On the embedded default in a
data folder of its own, with the shipped model serving; the raw model's images/s at the same
input size and precision (or int8 twin) are measured in the same run, before the stack starts.

    .venv/bin/python bench/dicom_study.py --slices 300 [--runtime openvino-int8]

A small study is sent first, so the worker has loaded the model when the timed one comes.
The last line printed is the report as one JSON object.
"""

import argparse
import json
import os
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))
from bench.inference import raw_images_per_second  # noqa: E402
from bench.stack import isolated_environment, manage  # noqa: E402
from tests.dicom_files import phantom_study  # noqa: E402
from tests.dicom_network import Orthanc, start_gateway  # noqa: E402
from tests.processes import Processes, free_port, wait_until  # noqa: E402


def results_in(orthanc: Orthanc, study: str) -> int:
    return sum(1 for series in orthanc.request("GET", f"/studies/{study}/series")
               if series["MainDicomTags"].get("Modality") != "CT")  # fmt: skip


def send_and_wait(orthanc: Orthanc, instances: list[bytes], timeout: float) -> dict:
    study = orthanc.store(instances)
    started = time.monotonic()
    orthanc.send_to_gateway(study)
    sent = time.monotonic()
    wait_until(lambda: results_in(orthanc, study) >= 2, timeout=timeout, what="the results")
    return {"sent_s": sent - started, "end_to_end_s": time.monotonic() - started}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--slices", type=int, default=300)
    parser.add_argument("--size", type=int, default=512, help="Slice side in pixels.")
    parser.add_argument("--quiet", type=float, default=10.0, help="The study quiet period (s).")
    parser.add_argument("--raw-batches", type=int, default=10)
    parser.add_argument(
        "--runtime", default="keras", help="KIDNEY_INFERENCE_RUNTIME: keras or openvino-int8."
    )
    args = parser.parse_args()

    data = tempfile.mkdtemp(prefix="kidney-bench-dicom-")
    environment = isolated_environment(
        data,
        KIDNEY_DICOM_STUDY_QUIET_SECONDS=str(args.quiet),
        KIDNEY_DICOM_CALLING_AE_TITLES="ORTHANC",
        KIDNEY_DICOM_POLL_SECONDS="0.2",
        KIDNEY_INFERENCE_RUNTIME=args.runtime,
    )
    manage(environment, "migrate", "--noinput")
    manage(environment, "bootstrap_model")
    os.environ.update(environment)
    os.environ["DJANGO_SETTINGS_MODULE"] = "kidneyproject.settings"
    import django

    django.setup()
    from django.conf import settings

    from gateway.models import ResultDelivery
    from ml_core.precision import resolve_precision
    from scans.models import Study
    from training.selectors import serving_model_version

    serving = serving_model_version()
    precision = resolve_precision(settings.KIDNEY_INFERENCE_PRECISION)
    if args.runtime == "openvino-int8":
        precision = "int8"
    raw = raw_images_per_second(serving.input_size, args.raw_batches, precision)
    print(f"raw model: {raw:.1f} images/s at {serving.input_size} px in {precision}", flush=True)

    with Processes(environment, Path(data) / "logs") as processes:
        gateway_port = free_port()
        orthanc = Orthanc(processes, Path(data) / "orthanc", gateway_port=gateway_port)
        start_gateway(
            processes,
            environment,
            KIDNEY_DICOM_PORT=gateway_port,
            KIDNEY_DICOM_DESTINATION=orthanc.destination,
        )
        processes.worker("inference")
        warm_up = send_and_wait(orthanc, phantom_study(3, size=args.size, seed=1), timeout=600)
        print(f"warm-up study (model loading included): {warm_up}", flush=True)
        stones = tuple(range(args.slices // 2, args.slices // 2 + 3))
        instances = phantom_study(args.slices, size=args.size, stone_at=stones, seed=2)
        timed = send_and_wait(orthanc, instances, timeout=3600)

    study = Study.objects.order_by("-created").first()
    delivery = ResultDelivery.objects.get(study=study)
    complete = study.last_received + timedelta(seconds=args.quiet)
    classify_s = (study.triaged_at - complete).total_seconds()
    report = {
        "slices": study.slices.count(),
        "slice_size": args.size,
        "model": serving.label,
        "input_size": serving.input_size,
        "precision": precision,
        "runtime": sorted(set(study.slices.values_list("prediction__runtime", flat=True))),
        "verdict": study.verdict,
        "received_slices_per_s": args.slices / timed["sent_s"],
        "quiet_period_s": args.quiet,
        "classify_s": classify_s,
        "classify_slices_per_s": args.slices / classify_s,
        "raw_model_images_per_s": raw,
        "classify_against_raw": args.slices / classify_s / raw,
        "results_delivered_s": (delivery.delivered - study.triaged_at).total_seconds(),
        "last_slice_to_results_s": (delivery.delivered - study.last_received).total_seconds(),
        **timed,
        "cpu": os.cpu_count(),
    }
    print(json.dumps({key: round(v, 3) if isinstance(v, float) else v
                      for key, v in report.items()}))  # fmt: skip


if __name__ == "__main__":
    main()
