import signal
import subprocess
import sys
import time

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

STOP_GRACE_SECONDS = 20


class Command(BaseCommand):
    help = (
        "Run web (gunicorn), an inference worker, a training worker, celery beat and the DICOM "
        "gateway (unless KIDNEY_DICOM_PORT is 0) together on this machine. Ctrl-C (or SIGTERM) "
        "stops them all; so does any one of them exiting."
    )

    def add_arguments(self, parser):
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8000)
        parser.add_argument("--web-workers", type=int, default=2)

    def handle(self, *args, host, port, web_workers, **options):
        python = sys.executable
        celery = [python, "-m", "celery", "-A", "kidneyproject"]
        commands = {
            "web": [
                python,
                "-m",
                "gunicorn",
                "kidneyproject.wsgi:application",
                f"--bind={host}:{port}",
                f"--workers={web_workers}",
                "--timeout=120",
                "--access-logfile=-",
                # gunicorn refuses a request line over 4 KB with an HTML page of its own; let
                # Django answer it, in the API's JSON error shape.
                "--limit-request-line=0",
            ],
            "inference": [
                *celery,
                "worker",
                "-Q",
                "inference,default",
                "-c",
                "1",
                "-n",
                "inference@%h",
            ],
            "training": [*celery, "worker", "-Q", "training", "-c", "1", "-n", "training@%h"],
            "beat": [*celery, "beat"],
        }
        if settings.KIDNEY_DICOM_PORT:
            commands["dicom"] = [python, "manage.py", "dicom_gateway"]
        stopping = False

        def request_stop(signum, frame):
            nonlocal stopping
            stopping = True

        signal.signal(signal.SIGINT, request_stop)
        signal.signal(signal.SIGTERM, request_stop)
        processes = {name: subprocess.Popen(command) for name, command in commands.items()}
        self.stdout.write(f"Serving http://{host}:{port}/ (Ctrl-C stops everything)")
        self.stdout.flush()
        exited = None
        while not stopping and exited is None:
            time.sleep(0.5)
            exited = next((name for name, p in processes.items() if p.poll() is not None), None)
        for process in processes.values():
            if process.poll() is None:
                process.terminate()
        deadline = time.monotonic() + STOP_GRACE_SECONDS
        for process in processes.values():
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if exited is not None and not stopping:
            code = processes[exited].returncode
            raise CommandError(f"The {exited} process exited with code {code}; stopped all.")
