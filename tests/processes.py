"""Real processes for fault tests and bench/faults.py: a private Redis that can be restarted,
Celery workers that can be killed, beat, a gunicorn web server, and a TCP proxy that can cut
the web server off from PostgreSQL. Each runs in its own process group so that a kill takes
the whole of it, as a crashed machine would."""

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
CELERY = [sys.executable, "-m", "celery", "-A", "kidneyproject"]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_until(condition, *, timeout: float, interval: float = 0.2, what: str = "") -> object:
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            raise TimeoutError(f"Timed out after {timeout} s waiting for {what or condition}")
        time.sleep(interval)


class Processes:
    """Starts the processes of a stack and stops every one of them on exit."""

    def __init__(self, environment: dict, log_dir: Path):
        self.environment = environment
        self.log_dir = Path(log_dir)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.running: dict[str, subprocess.Popen] = {}

    def __enter__(self) -> "Processes":
        return self

    def __exit__(self, *exc_info) -> None:
        for name in list(self.running):
            self.stop(name)

    def start(self, name: str, command: list[str], **overrides: str) -> subprocess.Popen:
        log = open(self.log_dir / f"{name}.log", "ab")  # noqa: SIM115 - the process keeps it
        process = subprocess.Popen(
            command,
            cwd=REPO_ROOT,
            env={**self.environment, **overrides},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        self.running[name] = process
        return process

    def kill(self, name: str) -> None:
        """SIGKILL to the whole process group: no cleanup, no acknowledgements."""
        process = self.running.pop(name)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)

    def stop(self, name: str) -> None:
        process = self.running.pop(name)
        try:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=30)
        except ProcessLookupError:
            pass
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=30)

    def log(self, name: str) -> str:
        path = self.log_dir / f"{name}.log"
        return path.read_text(errors="replace")[-4000:] if path.exists() else ""

    # The stack's parts.

    def redis(self, port: int) -> subprocess.Popen:
        """A private Redis that keeps nothing on disk: a restart loses every queued message."""
        options = {"--port": str(port), "--bind": "127.0.0.1", "--save": ""}
        options.update({"--appendonly": "no", "--dir": str(self.log_dir)})
        process = self.start("redis", ["redis-server", *_flatten(options)])
        wait_until(lambda: _accepts(port), timeout=20, what=f"Redis on port {port}")
        return process

    def worker(self, name: str, *, queues: str = "inference,default", **overrides: str):
        options = {"-Q": queues, "-c": "1", "-n": f"{name}-{os.getpid()}@%h"}
        return self.start(
            name, [*CELERY, "worker", "--loglevel=INFO", *_flatten(options)], **overrides
        )

    def beat(self, **overrides: str) -> subprocess.Popen:
        options = {"-s": str(self.log_dir / "beat-schedule")}
        return self.start(
            "beat", [*CELERY, "beat", "--loglevel=INFO", *_flatten(options)], **overrides
        )

    def web(self, port: int, **overrides: str) -> subprocess.Popen:
        options = {"-b": f"127.0.0.1:{port}", "-w": "2", "--timeout": "60"}
        command = [sys.executable, "-m", "gunicorn", "kidneyproject.wsgi", *_flatten(options)]
        process = self.start("web", command, **overrides)
        wait_until(lambda: _accepts(port), timeout=60, what=f"the web server on port {port}")
        return process


def _flatten(options: dict) -> list[str]:
    return [part for pair in options.items() for part in pair]


def _accepts(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
    except OSError:
        return False
    return True


class TcpProxy:
    """Forwards a local port to a server; `cut()` drops every connection and refuses new ones
    (the server looks unreachable), `restore()` forwards again."""

    def __init__(self, target_port: int, target_host: str = "127.0.0.1"):
        self.target = (target_host, target_port)
        self.port = free_port()
        self.listener: socket.socket | None = None
        self.connections: list[socket.socket] = []
        self.lock = threading.Lock()

    def __enter__(self) -> "TcpProxy":
        self.restore()
        return self

    def __exit__(self, *exc_info) -> None:
        self.cut()

    def restore(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self.listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def cut(self) -> None:
        if self.listener is not None:
            # shutdown() wakes the thread blocked in accept(); close() alone would not.
            with contextlib.suppress(OSError):
                self.listener.shutdown(socket.SHUT_RDWR)
            self.listener.close()
            self.listener = None
        with self.lock:
            for connection in self.connections:
                with contextlib.suppress(OSError):
                    connection.shutdown(socket.SHUT_RDWR)
                connection.close()
            self.connections.clear()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                server = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            server.settimeout(None)
            with self.lock:
                self.connections += [client, server]
            for source, destination in ((client, server), (server, client)):
                threading.Thread(target=_pipe, args=(source, destination), daemon=True).start()


def _pipe(source: socket.socket, destination: socket.socket) -> None:
    try:
        while data := source.recv(65536):
            destination.sendall(data)
    except OSError:
        pass
    finally:
        for end in (source, destination):
            with contextlib.suppress(OSError):
                end.shutdown(socket.SHUT_RDWR)
