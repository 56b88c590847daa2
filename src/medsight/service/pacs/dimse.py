"""DIMSE (pynetdicom): a C-STORE SCP that queues arriving studies by rules, C-STORE SCU, C-ECHO.

Instances are stored as they arrive.  When an association ends (released or aborted) the
studies it brought get their study rows at once, and are matched against the routing rules and
queued once no more instances of them have arrived for ``dimse_settle_s`` seconds: modalities
often send one series per association, and a study should be analysed once, complete.  Studies
received but not queued when the service stopped (or crashed) are queued when it starts again.

Examples
--------
>>> parse_destination("ORTHANC@127.0.0.1:4242")
('ORTHANC', '127.0.0.1', 4242)
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from medsight.core.errors import InvalidInputError, MedsightError
from medsight.service.errors import DeliveryError
from medsight.service.ingest import Ingested, save_dataset

if TYPE_CHECKING:
    from medsight.service.deps import Services

__all__ = ["StoreSCP", "echo", "parse_destination", "send_files"]

log = logging.getLogger(__name__)


def parse_destination(text: str, setting: str = "dimse_destination") -> tuple[str, str, int]:
    """``AE@host:port`` -> (AE title, host, port); an error names ``setting``."""
    try:
        ae, rest = text.split("@", 1)
        host, port = rest.rsplit(":", 1)
        return ae, host, int(port)
    except ValueError as exc:
        raise InvalidInputError(setting, f"{text!r} is not AE@host:port") from exc


class StoreSCP:
    """A Storage + Verification SCP feeding the service's store and queue."""

    def __init__(self, services: Services) -> None:
        self.services = services
        self._server: Any = None
        self._pending: dict[int, Ingested] = {}
        self._timers: dict[str, threading.Timer] = {}
        self._lock = threading.Lock()

    def _on_store(self, event: Any) -> int:
        try:
            ds = event.dataset
            ds.file_meta = event.file_meta
            with self._lock:
                into = self._pending.setdefault(id(event.assoc), Ingested())
            save_dataset(ds, self.services.settings.home / "studies", into)
        except MedsightError as err:
            log.warning("C-STORE rejected: %s", err)
            return 0xC210  # cannot understand
        except Exception:
            log.exception("C-STORE failed")
            return 0xA700  # out of resources
        return 0x0000

    def _on_end(self, event: Any) -> None:
        with self._lock:
            into = self._pending.pop(id(event.assoc), None)
        if into is None or not into.stored:
            return
        from medsight.service.jobs import record_studies
        from medsight.service.pacs.rules import match

        rules = self.services.settings.rules
        who = f"{event.assoc.requestor.ae_title}@{event.assoc.requestor.address}"
        try:
            found = {uid: match(rules, f) for uid, f in into.studies.items()}
            urgency = {uid: r.urgency for uid, r in found.items() if r is not None}
            for facts in record_studies(self.services, into, source="dimse", urgency=urgency):
                self.services.audit.record(who, "dimse", "receive_study", study=facts.uid)
                self._schedule(facts.uid)
        except Exception:
            log.exception("recording received studies failed")

    def _schedule(self, uid: str) -> None:
        with self._lock:
            old = self._timers.pop(uid, None)
            if old is not None:
                old.cancel()
            timer = threading.Timer(self.services.settings.dimse_settle_s, self._queue, (uid,))
            timer.daemon = True
            self._timers[uid] = timer
            timer.start()

    def _queue(self, uid: str) -> None:
        """Match the study's rule and queue it (no rule: it stays on the worklist as new)."""
        from medsight.service.ingest import StudyFacts
        from medsight.service.jobs import submit
        from medsight.service.pacs.rules import match

        with self._lock:
            self._timers.pop(uid, None)
        try:
            row = self.services.store.get_study(uid)
            facts = StudyFacts(
                uid=uid,
                patient_id=row.patient_id,
                modalities=set(filter(None, row.modalities.split(","))),
                description=row.description,
                body_part=row.body_part,
            )
            rule = match(self.services.settings.rules, facts)
            if rule is not None:
                submit(self.services, uid, rule.packages)
        except Exception:
            log.exception("queueing study %s failed", uid)

    def queue_unsubmitted(self) -> list[str]:
        """Queue studies received over DIMSE that never got a job (after a stop or crash)."""
        uids = self.services.store.studies_without_jobs(source="dimse")
        for uid in uids:
            self._queue(uid)
        return uids

    def start(self) -> None:
        """Listen on ``dimse_host:dimse_port`` in background threads."""
        from pynetdicom import AE, AllStoragePresentationContexts, evt
        from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]

        s = self.services.settings
        ae = AE(ae_title=s.ae_title)
        ae.supported_contexts = AllStoragePresentationContexts
        ae.add_supported_context(Verification)
        if s.dimse_allowed_aes:
            ae.require_calling_aet = list(s.dimse_allowed_aes)
        handlers = [
            (evt.EVT_C_STORE, self._on_store),
            (evt.EVT_RELEASED, self._on_end),
            (evt.EVT_ABORTED, self._on_end),
        ]
        self.queue_unsubmitted()
        self._server = ae.start_server(
            (s.dimse_host, s.dimse_port), block=False, evt_handlers=handlers
        )

    def stop(self) -> None:
        """Stop listening; queue the studies still waiting for their settle time now."""
        if self._server is not None:
            self._server.shutdown()
            self._server = None
        with self._lock:
            waiting = list(self._timers)
            for timer in self._timers.values():
                timer.cancel()
        for uid in waiting:
            self._queue(uid)


def send_files(destination: str, files: Sequence[Path], *, calling_ae: str = "MEDSIGHT") -> int:
    """C-STORE ``files`` to ``AE@host:port``; returns how many were accepted."""
    import pydicom
    from pynetdicom import AE

    ae_title, host, port = parse_destination(destination)
    datasets = [pydicom.dcmread(f) for f in files]
    ae = AE(ae_title=calling_ae)
    for sop_class, ts in {(d.SOPClassUID, d.file_meta.TransferSyntaxUID) for d in datasets}:
        ae.add_requested_context(sop_class, ts)
    assoc = ae.associate(host, port, ae_title=ae_title)
    if not assoc.is_established:
        raise DeliveryError(destination, "association rejected or peer unreachable")
    sent = 0
    try:
        for ds in datasets:
            status = assoc.send_c_store(ds)
            if status and status.Status == 0x0000:
                sent += 1
    finally:
        assoc.release()
    if sent != len(datasets):
        raise DeliveryError(destination, f"only {sent} of {len(datasets)} objects were accepted")
    return sent


def echo(destination: str, *, calling_ae: str = "MEDSIGHT") -> bool:
    """C-ECHO ``AE@host:port``; True when it answers with success."""
    from pynetdicom import AE
    from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]

    ae_title, host, port = parse_destination(destination)
    ae = AE(ae_title=calling_ae)
    ae.add_requested_context(Verification)
    assoc = ae.associate(host, port, ae_title=ae_title)
    if not assoc.is_established:
        return False
    try:
        status = assoc.send_c_echo()
        return bool(status) and status.Status == 0x0000
    finally:
        assoc.release()
