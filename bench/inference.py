"""Inference throughput: the raw model against the whole service, measured in one run.

1. Raw model: images/s of VGG16 `predict_on_batch` (batch 16) at 96, 128 and 224 px, in
   float32 and in each reduced precision given by --precisions (bfloat16 is fast only on CPUs
   with native bfloat16 arithmetic, float16 only on GPUs; int8 is the model's int8 twin on
   OpenVINO, ml_core.int8, calibrated on random images: its speed, not its accuracy).
2. Service: a burst of uploads through REST -> Celery worker -> stored prediction, serving the
   shipped model (or, with --model placeholder, the phantom placeholder at --service-size px)
   once for each KIDNEY_INFERENCE_RUNTIME in --runtimes, Keras in
   KIDNEY_INFERENCE_PRECISION=--precision; images/s from the first upload to the last
   stored prediction, and the share of decisions the same as the first runtime's.
3. The ratio service / raw at the same input size: the share of raw model speed the
   service delivers.
4. The access audit's cost: the mean time of a scan record read over REST (which records one
   audit row, written after the response is delivered) next to the time of writing that row
   alone, on the same database: worker time the client does not wait for.

    .venv/bin/python bench/inference.py [--data ../shared/data/kidney-ct] [--uploads 64]
        [--database-url postgres://... --broker-url redis://...] [--evidence-maps flagged]

Without --database-url/--broker-url the service runs on the embedded default (SQLite and the
filesystem transport). The database given is migrated and emptied before each service run.
"""

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import requests

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))
from bench.stack import isolated_environment, manage  # noqa: E402
from ml_core.precision import resolve_precision  # noqa: E402
from ml_core.shipped import SHIPPED_MODEL_DIR  # noqa: E402

BATCH = 16


def raw_images_per_second(input_size: int, batches: int, precision: str = "float32") -> float:
    from ml_core.classifier import build_classifier
    from ml_core.precision import with_precision

    model = build_classifier(["normal", "stone"], input_size, "none")
    batch = np.random.default_rng(0).normal(size=(BATCH, input_size, input_size, 3))
    batch = batch.astype(np.float32)
    if precision == "int8":
        from ml_core.int8 import OpenVinoPredictor, quantize

        model = OpenVinoPredictor(quantize(model, [batch]), max_batch_size=BATCH)
    else:
        model = with_precision(model, precision)
    model.predict_on_batch(batch)  # warm-up: graph tracing
    started = time.perf_counter()
    for _ in range(batches):
        model.predict_on_batch(batch)
    return batches * BATCH / (time.perf_counter() - started)


def upload_payloads(data_dir: str | None, count: int) -> list[bytes]:
    if data_dir:
        files = sorted(Path(data_dir, "stone").glob("*.jpg"))[: count // 2]
        files += sorted(Path(data_dir, "normal").glob("*.jpg"))[: count - len(files)]
        return [path.read_bytes() for path in files]
    import io

    from PIL import Image

    from ml_core.phantoms import draw_phantom

    rng = np.random.default_rng(0)
    payloads = []
    for index in range(count):
        pixels = draw_phantom(rng, size=224, with_stone=bool(index % 2))
        output = io.BytesIO()
        Image.fromarray((pixels * 255).astype(np.uint8)).save(output, format="PNG")
        payloads.append(output.getvalue())
    return payloads


AUDIT_SAMPLES = 200
AUDIT_WRITE = f"""
import time
from audit.models import AccessEvent
from audit.services import access_events_write
started = time.perf_counter()
for _ in range({AUDIT_SAMPLES}):
    access_events_write([AccessEvent(username="bench", kind="record", path="/api/scans/bench/",
                                     scan_ids="00000000-0000-0000-0000-000000000000")])
print(1000 * (time.perf_counter() - started) / {AUDIT_SAMPLES})
"""


def audit_overhead_ms(session, scan_url: str, environment: dict) -> tuple[float, float]:
    """(mean ms of an audited record read over REST, mean ms of the audit write alone, which
    the service does after the response is delivered)."""
    started = time.perf_counter()
    for _ in range(AUDIT_SAMPLES):
        session.get(scan_url).raise_for_status()
    read_ms = 1000 * (time.perf_counter() - started) / AUDIT_SAMPLES
    write_ms = float(manage(environment, "shell", "-c", AUDIT_WRITE).split()[-1])
    return read_ms, write_ms


def service_images_per_second(args, payloads: list[bytes], runtime: str) -> dict:
    environment = isolated_environment(
        tempfile.mkdtemp(prefix="kidney-bench-"),
        KIDNEY_EVIDENCE_MAPS=args.evidence_maps,
        KIDNEY_INFERENCE_PRECISION=args.precision,
        KIDNEY_INFERENCE_RUNTIME=runtime,
    )
    if args.database_url:
        environment["DATABASE_URL"] = args.database_url
    if args.broker_url:
        environment["CELERY_BROKER_URL"] = args.broker_url
    manage(environment, "migrate", "--noinput")
    if args.database_url:  # one database for every runtime's run: each starts empty
        manage(environment, "flush", "--noinput")
    if args.model == "shipped":
        manage(environment, "bootstrap_model", "--force")
    else:
        manage(environment, "bootstrap_model", "--force", "--placeholder", "--input-size",
               str(args.service_size), "--samples", "64", "--epochs", "2")  # fmt: skip
    token = manage(environment, "create_api_user", "bench", "--role", "clinician").split()[-1]
    stack = subprocess.Popen(
        [sys.executable, "manage.py", "runstack", "--port", str(args.port)],
        cwd=REPO_ROOT,
        env=environment,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    session = requests.Session()
    session.headers["Authorization"] = f"Token {token}"
    base = f"http://127.0.0.1:{args.port}/api"
    try:
        _wait(lambda: session.get(f"{base}/models/", timeout=5).ok, "the web server")
        # One scan first, so that the worker has loaded the model before the clock starts. A
        # payload of its own: the same bytes again would be the same scan.
        warm_up, payloads = payloads[0], payloads[1:]
        first = session.post(f"{base}/scans/", files={"file": warm_up}).json()
        _wait(lambda: session.get(first["url"]).json()["status"] == "predicted", "warm-up")

        started = time.perf_counter()
        with ThreadPoolExecutor(max_workers=4) as pool:
            responses = list(
                pool.map(
                    lambda data: session.post(f"{base}/scans/", files={"file": data}), payloads
                )
            )
        uploaded = time.perf_counter() - started
        assert all(response.status_code == 202 for response in responses)

        def all_predicted() -> bool:
            listing = session.get(f"{base}/scans/", params={"status": "predicted"}).json()
            return listing["count"] == len(payloads) + 1

        _wait(all_predicted, "all predictions", interval=0.1)
        elapsed = time.perf_counter() - started
        audit = audit_overhead_ms(session, first["url"], environment)
        predictions = [
            session.get(response.json()["url"]).json()["prediction"] for response in responses
        ]
    finally:
        stack.send_signal(signal.SIGINT)
        stack.wait(timeout=60)
    return {
        "images_per_second": len(payloads) / elapsed,
        "uploads_per_second": len(payloads) / uploaded,
        "audit": audit,
        "labels": [prediction["label"] for prediction in predictions],
        "runtimes": sorted({prediction["runtime"] for prediction in predictions}),
    }


def _wait(condition, what: str, *, timeout: float = 600, interval: float = 0.5) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if condition():
                return
        except (requests.RequestException, KeyError, ValueError):
            pass
        time.sleep(interval)
    raise TimeoutError(f"Timed out waiting for {what}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", help="kidney-ct folder (class subfolders); else phantoms")
    parser.add_argument("--uploads", type=int, default=64)
    parser.add_argument("--model", choices=["shipped", "placeholder"], default="shipped")
    parser.add_argument(
        "--service-size", type=int, default=128, help="The placeholder's input size."
    )
    parser.add_argument(
        "--precision", default="auto", help="KIDNEY_INFERENCE_PRECISION for the service."
    )
    parser.add_argument("--precisions", default="bfloat16,int8", help="Raw model, beside float32.")
    parser.add_argument(
        "--runtimes",
        default="keras,openvino-int8",
        help="KIDNEY_INFERENCE_RUNTIME for each service run, in turn.",
    )
    parser.add_argument("--database-url")
    parser.add_argument("--broker-url")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument(
        "--evidence-maps",
        choices=["flagged", "always", "on_request"],
        default="on_request",
        help="Which scans' evidence maps the worker queues (KIDNEY_EVIDENCE_MAPS).",
    )
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

    if args.model == "shipped":
        from ml_core.shipped import shipped_description

        args.service_size = shipped_description(SHIPPED_MODEL_DIR)["input_size"]
    precisions = ["float32", *[name for name in args.precisions.split(",") if name]]
    raw = {}
    for size, batches in ((96, 12), (128, 8), (224, 4)):
        for precision in precisions:
            raw[size, precision] = raw_images_per_second(size, batches, precision)
        speeds = ", ".join(f"{raw[size, name]:.1f} {name}" for name in precisions)
        ratios = "".join(
            f", {name}/float32 {raw[size, name] / raw[size, 'float32']:.2f}"
            for name in precisions[1:]
        )
        print(f"raw model, predict_on_batch batch {BATCH}, {size} px: {speeds} images/s{ratios}")

    payloads = upload_payloads(args.data, args.uploads + 1)  # one to warm up
    backend = "PostgreSQL + Redis" if args.database_url else "embedded (SQLite + filesystem)"
    source = "kidney-ct JPEGs" if args.data else "224 px phantom PNGs"
    runs = {}
    for runtime in args.runtimes.split(","):
        runs[runtime] = service_images_per_second(args, payloads, runtime)
        result, first = runs[runtime], next(iter(runs.values()))
        served = "+".join(result["runtimes"])
        same = np.mean(np.array(result["labels"]) == np.array(first["labels"]))
        speedup = result["images_per_second"] / first["images_per_second"]
        print(
            f"service end to end, {args.uploads} uploads of {source}, {args.model} model at "
            f"{args.service_size} px, KIDNEY_INFERENCE_RUNTIME={runtime} (served by {served}), "
            f"{backend}, evidence maps {args.evidence_maps}: "
            f"{result['images_per_second']:7.1f} images/s (uploads alone: "
            f"{result['uploads_per_second']:.1f}/s); {speedup:.2f}x the first runtime's, "
            f"{same:.1%} of decisions the same"
        )
        precision = "int8" if served == "openvino-int8" else resolve_precision(args.precision)
        if (args.service_size, precision) in raw:
            ratio = result["images_per_second"] / raw[args.service_size, precision]
            print(
                f"ratio service / raw model at {args.service_size} px in {precision}: {ratio:.2f}"
            )
    read_ms, audit_ms = first["audit"]
    print(
        f"access audit: a scan record read over REST {read_ms:.2f} ms (mean of "
        f"{AUDIT_SAMPLES}); the audit row it writes after the response: {audit_ms:.2f} ms of "
        f"worker time ({100 * audit_ms / read_ms:.1f} % of the read's)"
    )


if __name__ == "__main__":
    main()
