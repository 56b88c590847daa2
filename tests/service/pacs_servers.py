"""Local servers for the connector tests: a real Orthanc, a recording FHIR stub, medsight serve.

Both listen on 127.0.0.1 (Orthanc's DICOM port cannot be bound to loopback only, so it refuses
remote HTTP and only knows the test's own modality) and are stopped by their PID.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx

_PLUGIN_DIRS = ("/usr/share/orthanc/plugins", "/usr/lib/orthanc")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def serve_medsight(
    home: Path, packages: list[Path], password: str, log: Path | None = None, **env_extra: str
) -> Iterator[str]:
    """``medsight serve`` in a child process on a free loopback port, until it answers
    ``/api/health``; yields its base URL and stops it by its PID.  ``env_extra``: more
    ``MEDSIGHT_*`` settings; ``log`` (default ``home/../serve.log``) gets its stderr."""
    port = free_port()
    env = {
        **os.environ,
        "MEDSIGHT_HOME": str(home),
        "MEDSIGHT_PACKAGES": json.dumps([str(p) for p in packages]),
        "MEDSIGHT_ADMIN_PASSWORD": password,
        "MEDSIGHT_WORKER_POLL_S": "0.05",
        **env_extra,
    }
    env.pop("MEDSIGHT_SETTINGS", None)
    home.mkdir(parents=True, exist_ok=True)
    log = log or home.parent / "serve.log"
    proc = subprocess.Popen(
        [sys.executable, "-m", "medsight.cli.app", "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=open(log, "wb"),  # noqa: SIM115 - the child owns it
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, log.read_text()[-2000:]
            try:
                if httpx.get(f"{base}/api/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "medsight serve did not start"
            time.sleep(0.2)
        yield base
    finally:
        stop_process(proc)


def stop_process(
    proc: subprocess.Popen, sig: signal.Signals = signal.SIGTERM, timeout: float = 15
) -> None:
    """Stop a server this test started, by its PID: ``sig``, then SIGKILL after ``timeout``."""
    if proc.poll() is not None:
        return
    os.kill(proc.pid, sig)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=5)


@dataclass
class Orthanc:
    http_port: int
    dicom_port: int
    scp_port: int  # the port Orthanc sends to for modality "medsight"
    pid: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def dicomweb(self) -> str:
        return f"{self.url}/dicom-web"

    @property
    def aet(self) -> str:
        return f"ORTHANC@127.0.0.1:{self.dicom_port}"


def _dicomweb_plugin() -> str:
    for folder in _PLUGIN_DIRS:
        path = Path(folder) / "libOrthancDicomWeb.so"
        if path.exists():
            return str(path)
    raise FileNotFoundError("libOrthancDicomWeb.so (Debian package orthanc-dicomweb)")


@contextlib.contextmanager
def serve_http(handler: type[BaseHTTPRequestHandler]) -> Iterator[int]:
    """``handler`` served on a free 127.0.0.1 port by a daemon thread; yields the port, then
    stops the server and its thread."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@contextlib.contextmanager
def run_orthanc(binary: str, workdir: Path) -> Iterator[Orthanc]:
    http_port, dicom_port, scp_port = free_port(), free_port(), free_port()
    config = {
        "Name": "medsight-test",
        "StorageDirectory": str(workdir / "storage"),
        "IndexDirectory": str(workdir / "storage"),
        "HttpPort": http_port,
        "DicomPort": dicom_port,
        "DicomAet": "ORTHANC",
        "RemoteAccessAllowed": False,
        "AuthenticationEnabled": False,
        "DicomCheckCalledAet": False,
        "DicomAlwaysAllowStore": True,
        "DicomAlwaysAllowEcho": True,
        "DicomModalities": {"medsight": ["MEDSIGHT", "127.0.0.1", scp_port]},
        "DicomScuTimeout": 10,
        "Plugins": [_dicomweb_plugin()],
        "DicomWeb": {"Enable": True, "Root": "/dicom-web/"},
        "ConcurrentJobs": 1,
        "SaveJobs": False,
    }
    cfg = workdir / "orthanc.json"
    cfg.write_text(json.dumps(config, indent=2))
    log = open(workdir / "orthanc.log", "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen([binary, str(cfg)], stdout=log, stderr=subprocess.STDOUT, cwd=workdir)
    try:
        deadline = time.monotonic() + 30
        while True:
            if proc.poll() is not None:
                raise RuntimeError(
                    f"Orthanc exited ({proc.returncode}): "
                    + (workdir / "orthanc.log").read_text(errors="replace")[-2000:]
                )
            try:
                if httpx.get(f"http://127.0.0.1:{http_port}/system", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("Orthanc did not answer within 30 s")
            time.sleep(0.2)
        yield Orthanc(http_port, dicom_port, scp_port, proc.pid)
    finally:
        stop_process(proc)
        log.close()


@dataclass
class FhirStub:
    url: str
    received: list[dict] = field(default_factory=list)
    fail_with: int | None = None


@contextlib.contextmanager
def run_fhir_stub() -> Iterator[FhirStub]:
    """A FHIR endpoint that validates each POSTed Bundle (fhir.resources) and records it."""
    from fhir.resources.R4B.bundle import Bundle

    stub = FhirStub(url="")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            entry = {"path": self.path, "content_type": self.headers.get("Content-Type")}
            try:
                bundle = json.loads(body)
                Bundle.model_validate(bundle)
                entry["bundle"], entry["valid"] = bundle, True
            except Exception as exc:
                entry["valid"], entry["error"] = False, str(exc)[:500]
            stub.received.append(entry)
            status = stub.fail_with or (201 if entry["valid"] else 400)
            self.send_response(status)
            if status == 201:
                self.send_header("Location", f"{self.path}/{len(stub.received)}")
            self.send_header("Content-Type", "application/fhir+json")
            self.end_headers()
            self.wfile.write(b'{"resourceType": "OperationOutcome", "issue": []}')

        def log_message(self, *_args) -> None:
            pass

    with serve_http(Handler) as port:
        stub.url = f"http://127.0.0.1:{port}/fhir"
        yield stub
