"""A worker process whose analysis stalls, for the kill -9 test (run as a script).

Usage: python slow_worker.py HOME PACKAGE_DIR LEASE_S
"""

from __future__ import annotations

import sys
import time
from pathlib import Path


def main(home: str, package: str, lease: str) -> None:
    from medsight.service.catalog import PackageCatalog
    from medsight.service.settings import ServiceSettings
    from medsight.service.store import Store
    from medsight.service.worker import Worker, default_analyse

    settings = ServiceSettings(
        home=Path(home), packages=[Path(package)], worker_poll_s=0.05, job_lease_s=float(lease)
    )

    def stalled(study, out, packages):
        out.mkdir(parents=True, exist_ok=True)
        (out / "half-written.txt").write_text("the worker dies before this job ends")
        (Path(home) / "stalled").write_text(study.name)
        time.sleep(600)
        return default_analyse(study, out, packages)

    store = Store(settings.resolved_database_url())
    Worker(store, settings, PackageCatalog(settings.packages), stalled).start()
    while True:
        time.sleep(1)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3])
