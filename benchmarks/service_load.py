"""Load benchmark of ``medsight serve`` on loopback (not a test).

Starts ``medsight serve`` in a temporary home with a tiny random-weight package, uploads
``--studies`` single-slice CT studies (pydicom's CT_small with fresh UIDs) and times how long
the in-process worker takes to analyse them all (job throughput).  Then ``--clients``
concurrent clients, each with its own keep-alive connection, send a mix of authenticated reads
(worklist, study, job, report, one rendered slice) until ``--requests`` requests are done or
``--duration`` seconds have passed.  Every request is audited by the service, so this also
measures the cost of the hash-chained audit log.  Throughput and latency percentiles go to JSON.

Usage: ``python benchmarks/service_load.py [--clients 8] [--requests 2000] [--duration 60]
[--studies 10] [--out benchmarks/results/service_load.json]``
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import numpy as np

PASSWORD = "bench-password-1"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _tiny_package(folder: Path) -> Path:
    from medsight.models.demo import demo_classifier

    return demo_classifier(folder, "bench-ct", ["CT"]).path


def _studies(n: int) -> list[bytes]:
    import pydicom
    from pydicom.data import get_testdata_file

    out = []
    for _ in range(n):
        ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
        ds.StudyInstanceUID = pydicom.uid.generate_uid()
        ds.SeriesInstanceUID = pydicom.uid.generate_uid()
        ds.SOPInstanceUID = pydicom.uid.generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        buf = io.BytesIO()
        ds.save_as(buf)
        out.append(buf.getvalue())
    return out


def _percentiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {}
    arr = np.asarray(values) * 1000
    return {f"p{q}_ms": round(float(np.percentile(arr, q)), 2) for q in (50, 90, 95, 99)} | {
        "mean_ms": round(float(arr.mean()), 2),
        "max_ms": round(float(arr.max()), 2),
    }


def _serve(home: Path, package: Path, port: int) -> subprocess.Popen:
    env = {
        **os.environ,
        "MEDSIGHT_HOME": str(home),
        "MEDSIGHT_PACKAGES": json.dumps([str(package)]),
        "MEDSIGHT_ADMIN_PASSWORD": PASSWORD,
        "MEDSIGHT_WORKER_POLL_S": "0.05",
    }
    env.pop("MEDSIGHT_SETTINGS", None)
    cmd = [sys.executable, "-m", "medsight.cli.app", "serve", "--port", str(port)]
    proc = subprocess.Popen(
        [*cmd, "--log-level", "warning"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        if proc.poll() is not None:
            raise RuntimeError("medsight serve exited")
        try:
            if httpx.get(f"{base}/api/health", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError("medsight serve did not start in 60 s")
        time.sleep(0.2)


def run(clients: int, requests: int, duration: float, n_studies: int) -> dict:
    """Start the service, fill it, load it; return the measurements."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        package = _tiny_package(root)
        port = _free_port()
        base = f"http://127.0.0.1:{port}"
        proc = _serve(root / "home", package, port)
        try:
            login = httpx.post(
                f"{base}/api/auth/login", data={"username": "admin", "password": PASSWORD}
            )
            auth = {"Authorization": f"Bearer {login.json()['access_token']}"}
            t0 = time.perf_counter()
            upload_lat, jobs = [], []
            for data in _studies(n_studies):
                t = time.perf_counter()
                resp = httpx.post(
                    f"{base}/api/studies",
                    files=[("files", ("ct.dcm", data, "application/dicom"))],
                    headers=auth,
                    timeout=60,
                )
                upload_lat.append(time.perf_counter() - t)
                resp.raise_for_status()
                jobs.append(resp.json()["jobs"][0]["id"])
            pending = set(jobs)
            while pending:
                for job_id in list(pending):
                    state = httpx.get(f"{base}/api/jobs/{job_id}", headers=auth).json()["state"]
                    if state in ("done", "failed"):
                        pending.discard(job_id)
                if time.perf_counter() - t0 > 600:
                    raise RuntimeError("jobs did not finish in 10 minutes")
                time.sleep(0.1)
            analysis_s = time.perf_counter() - t0
            studies = [
                httpx.get(f"{base}/api/jobs/{j}", headers=auth).json()["study_uid"] for j in jobs
            ]
            paths = []
            for uid, job_id in zip(studies, jobs, strict=True):
                paths += [
                    "/api/worklist",
                    f"/api/studies/{uid}",
                    f"/api/jobs/{job_id}",
                    f"/api/jobs/{job_id}/report",
                    f"/api/studies/{uid}/series/0/slices/0.png",
                ]
            latencies: dict[str, list[float]] = {}
            errors = 0
            lock = threading.Lock()
            counter = iter(range(requests))
            stop_at = time.perf_counter() + duration

            def client(worker: int) -> None:
                nonlocal errors
                with httpx.Client(base_url=base, headers=auth, timeout=30) as http:
                    while time.perf_counter() < stop_at:
                        with lock:
                            i = next(counter, None)
                        if i is None:
                            return
                        path = paths[(i * 7 + worker) % len(paths)]
                        t = time.perf_counter()
                        try:
                            ok = http.get(path).status_code == 200
                        except httpx.HTTPError:
                            ok = False
                        took = time.perf_counter() - t
                        kind = path.split("/")[2] + ("/slice" if path.endswith(".png") else "")
                        kind += "/report" if path.endswith("/report") else ""
                        with lock:
                            latencies.setdefault(kind, []).append(took)
                            errors += 0 if ok else 1

            t1 = time.perf_counter()
            threads = [threading.Thread(target=client, args=(w,)) for w in range(clients)]
            for th in threads:
                th.start()
            for th in threads:
                th.join()
            wall = time.perf_counter() - t1
        finally:
            os.kill(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)
    every = [x for v in latencies.values() for x in v]
    return {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "settings": {
            "clients": clients,
            "max_requests": requests,
            "max_duration_s": duration,
            "studies": n_studies,
        },
        "analysis": {
            "jobs": len(jobs),
            "wall_s": round(analysis_s, 2),
            "jobs_per_s": round(len(jobs) / analysis_s, 3),
            "upload": _percentiles(upload_lat),
        },
        "reads": {
            "requests": len(every),
            "errors": errors,
            "wall_s": round(wall, 2),
            "requests_per_s": round(len(every) / wall, 1),
            "latency": _percentiles(every),
            "by_endpoint": {k: _percentiles(v) | {"n": len(v)} for k, v in latencies.items()},
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--duration", type=float, default=60.0)
    parser.add_argument("--studies", type=int, default=10)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/service_load.json"))
    args = parser.parse_args()
    result = run(args.clients, args.requests, args.duration, args.studies)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
