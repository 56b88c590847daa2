"""A throw-away PostgreSQL cluster on a free loopback port (Debian ``postgresql``).

initdb refuses to run as root, so under root initdb and the server run as the ``postgres``
user (``subprocess`` ``user=``, so the PID is the server's own); it is stopped by that PID.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

from .pacs_servers import stop_process


def pg_bin() -> Path | None:
    """The folder of initdb / postgres (Debian keeps them off PATH)."""
    found = shutil.which("initdb")
    if found:
        return Path(found).parent
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return Path(versions[-1]).parent if versions else None


@contextlib.contextmanager
def run_postgres(bindir: Path, workdir: Path, port: int) -> Iterator[str]:
    """Yield a SQLAlchemy URL of a fresh database; stop the server afterwards.

    ``workdir`` must be reachable by the ``postgres`` user when running as root (a fresh
    folder directly under the system temp folder is).
    """
    data = workdir / "pgdata"
    as_user: dict = {}
    if os.geteuid() == 0:
        user = pwd.getpwnam("postgres")
        data.mkdir()
        os.chown(data, user.pw_uid, user.pw_gid)
        as_user = {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []}
    subprocess.run(
        [str(bindir / "initdb"), "-D", str(data), "-U", "medsight", "-A", "trust"],
        check=True,
        **as_user,
        capture_output=True,
        timeout=120,
    )
    proc = subprocess.Popen(
        [
            str(bindir / "postgres"),
            "-D",
            str(data),
            "-p",
            str(port),
            "-h",
            "127.0.0.1",
            "-k",
            str(data),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        **as_user,
    )
    url = f"postgresql+psycopg://medsight@127.0.0.1:{port}/postgres"
    try:
        import sqlalchemy

        deadline = time.monotonic() + 30
        while True:
            try:
                sqlalchemy.create_engine(url).connect().close()
                break
            except sqlalchemy.exc.OperationalError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        yield url
    finally:
        stop_process(proc, signal.SIGINT, timeout=20)  # SIGINT: fast shutdown
