"""DIMSE query/retrieve (pynetdicom): C-FIND studies on a PACS, C-MOVE one to medsight's SCP.

Many hospital PACS speak only DIMSE.  ``dimse_qr_peer`` (``AE@host:port``) names one; medsight
is its SCU with the Study Root information model at the STUDY level:

* :func:`c_find_studies` sends the same matching keys as the QIDO-RS path
  (:meth:`~medsight.service.pacs.query.StudyQuery.filters`) and turns the answers into the same
  rows (:func:`~medsight.service.pacs.query.study_rows`), so the page shows both alike.  C-FIND
  has no ``limit``: past ``query.limit`` answers medsight sends a C-CANCEL.
* :func:`c_move_study` asks the PACS to send a study to medsight's own AE title.  The PACS
  opens a new association to medsight's C-STORE SCP (:class:`~medsight.service.pacs.dimse.
  StoreSCP`, which stores and queues what arrives), so C-MOVE needs ``dimse_port`` and the PACS
  must know ``ae_title`` at that address: :func:`check_move_settings` refuses otherwise.  The
  answer carries the sub-operation counts (completed / failed / warning); a failed or partial
  move raises :class:`MoveError` with them, and whatever did arrive stays stored.

:mod:`medsight.service.pacs.pulls` runs a C-MOVE as a background pull job.

Examples
--------
>>> parse_peer("ORTHANC@127.0.0.1:4242")
('ORTHANC', '127.0.0.1', 4242)
>>> MoveCounts(completed=3, failed=1).summary()
'3 completed, 1 failed, 0 warning'
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from medsight.core.errors import InvalidInputError
from medsight.service.errors import DeliveryError
from medsight.service.pacs.dimse import parse_destination

if TYPE_CHECKING:
    from medsight.service.pacs.query import StudyQuery
    from medsight.service.settings import ServiceSettings

__all__ = [
    "MoveCounts",
    "MoveError",
    "c_find_studies",
    "c_move_study",
    "check_move_settings",
    "find_study",
    "parse_peer",
]

#: Seconds to wait for an association, and for each C-FIND answer.
ASSOCIATION_TIMEOUT_S = 15.0
FIND_TIMEOUT_S = 60.0
#: Seconds to wait for each C-MOVE answer: a PACS may answer only once every instance is sent.
MOVE_TIMEOUT_S = 900.0
#: Return keys asked at the STUDY level beyond the matching keys.
RETURN_KEYS = (
    "StudyInstanceUID",
    "PatientID",
    "PatientName",
    "StudyDate",
    "StudyTime",
    "AccessionNumber",
    "ModalitiesInStudy",
    "StudyDescription",
    "NumberOfStudyRelatedSeries",
    "NumberOfStudyRelatedInstances",
)
_PENDING = (0xFF00, 0xFF01)
_SUCCESS, _WARNING, _CANCEL = 0x0000, 0xB000, 0xFE00
_DESTINATION_UNKNOWN = 0xA801


class MoveError(DeliveryError):
    """A C-MOVE failed or moved only part of a study; ``counts`` says how much arrived."""

    def __init__(
        self,
        where: str | None,
        problem: str,
        *,
        hint: str | None = None,
        counts: MoveCounts | None = None,
    ) -> None:
        super().__init__(where, problem, hint=hint)
        self.counts = counts or MoveCounts()


@dataclasses.dataclass
class MoveCounts:
    """C-MOVE sub-operations as the PACS reports them."""

    completed: int = 0
    failed: int = 0
    warning: int = 0
    remaining: int | None = None

    def summary(self) -> str:
        """``"<c> completed, <f> failed, <w> warning"``."""
        return f"{self.completed} completed, {self.failed} failed, {self.warning} warning"


def parse_peer(text: str) -> tuple[str, str, int]:
    """``AE@host:port`` -> (AE title, host, port); an error names ``dimse_qr_peer``."""
    return parse_destination(text, "dimse_qr_peer")


def _peer(settings: ServiceSettings) -> str:
    if not settings.dimse_qr_peer:
        raise InvalidInputError(
            "dimse_qr_peer",
            "no DIMSE query/retrieve peer is configured",
            hint="set MEDSIGHT_DIMSE_QR_PEER to the PACS's AE@host:port",
        )
    return settings.dimse_qr_peer


@contextlib.contextmanager
def _association(settings: ServiceSettings, sop_class: str, timeout: float) -> Iterator[Any]:
    """An association with the peer for ``sop_class``; released (or aborted) afterwards."""
    from pynetdicom import AE

    peer = _peer(settings)
    ae_title, host, port = parse_peer(peer)
    ae = AE(ae_title=settings.ae_title)
    ae.acse_timeout = ae.connection_timeout = ASSOCIATION_TIMEOUT_S
    ae.dimse_timeout = ae.network_timeout = timeout
    ae.add_requested_context(sop_class)
    assoc = ae.associate(host, port, ae_title=ae_title)
    if not assoc.is_established:
        raise DeliveryError(
            peer,
            "association rejected or peer unreachable (does the PACS know medsight's AE title "
            f"{settings.ae_title!r}?)",
        )
    try:
        yield assoc
    finally:
        if assoc.is_established:
            assoc.release()


def _no_answer(peer: str, what: str, ae_title: str) -> DeliveryError:
    return DeliveryError(
        peer,
        f"{what}: no answer (timed out or aborted; the PACS may refuse queries from medsight's "
        f"AE title {ae_title!r})",
    )


def _identifier(filters: dict[str, str]) -> Any:
    from pydicom import Dataset

    ds = Dataset()
    ds.QueryRetrieveLevel = "STUDY"
    for keyword in RETURN_KEYS:
        setattr(ds, keyword, filters.get(keyword, ""))
    return ds


def _find(settings: ServiceSettings, filters: dict[str, str], limit: int) -> list[Any]:
    """C-FIND at the STUDY level: at most ``limit`` identifiers."""
    from pynetdicom.sop_class import (  # type: ignore[attr-defined]
        StudyRootQueryRetrieveInformationModelFind as FIND,
    )

    peer = _peer(settings)
    found: list[Any] = []
    with _association(settings, FIND, FIND_TIMEOUT_S) as assoc:
        cancelled = False
        for status, identifier in assoc.send_c_find(_identifier(filters), FIND):
            code = status.get("Status") if status else None
            if code is None:
                raise _no_answer(peer, "C-FIND", settings.ae_title)
            if code in _PENDING:
                if identifier is not None and len(found) < limit:
                    found.append(identifier)
                if len(found) >= limit and not cancelled:
                    assoc.send_c_cancel(1, query_model=FIND)
                    cancelled = True
            elif code not in (_SUCCESS, _CANCEL):
                comment = status.get("ErrorComment", "")
                raise DeliveryError(peer, f"C-FIND refused (status 0x{code:04X}) {comment}")
    return found


def c_find_studies(settings: ServiceSettings, query: StudyQuery) -> list[dict[str, Any]]:
    """The studies on ``dimse_qr_peer`` matching ``query``, as :func:`study_rows` rows.

    Matching on ``ModalitiesInStudy`` is optional for a C-FIND SCP: a row whose modalities the
    PACS lists without the one asked for is dropped rather than shown as a match.

    Raises
    ------
    InvalidInputError
        ``dimse_qr_peer`` is not set.
    DeliveryError
        The PACS refused the association or the query, or did not answer (502).
    """
    from medsight.service.pacs.query import study_rows

    found = _find(settings, query.filters(), query.limit)
    rows = study_rows([ds.to_json_dict() for ds in found])
    if query.modality:
        rows = [r for r in rows if not r["modalities"] or query.modality in r["modalities"]]
    return rows


def find_study(settings: ServiceSettings, study_uid: str) -> dict[str, Any] | None:
    """The PACS's row for one study (C-FIND by StudyInstanceUID), None when it has none."""
    from medsight.service.pacs.query import study_rows

    found = _find(settings, {"StudyInstanceUID": study_uid}, 10)
    rows = study_rows([ds.to_json_dict() for ds in found])
    return next((r for r in rows if r["study_uid"] == study_uid), None)


def check_move_settings(settings: ServiceSettings) -> str:
    """Refuse a C-MOVE the settings cannot receive; returns the peer ``AE@host:port``.

    Raises
    ------
    InvalidInputError
        No peer, no C-STORE SCP (``dimse_port``), or an SCP that would refuse the peer's
        C-STOREs (``dimse_allowed_aes`` without the peer's AE title).
    """
    peer = _peer(settings)
    if settings.dimse_port is None:
        raise InvalidInputError(
            "dimse_port",
            "C-MOVE sends the study to medsight's C-STORE SCP, which is not running",
            hint=f"set MEDSIGHT_DIMSE_PORT and register {settings.ae_title} at that port on "
            "the PACS as a move destination",
        )
    peer_ae = parse_peer(peer)[0]
    if settings.dimse_allowed_aes and peer_ae not in settings.dimse_allowed_aes:
        raise InvalidInputError(
            "dimse_allowed_aes",
            f"does not hold the PACS's AE title {peer_ae!r}: the C-STORE SCP would refuse the "
            "study the PACS sends",
            hint=f"add {peer_ae!r} to dimse_allowed_aes",
        )
    return peer


def _counts(status: Any, counts: MoveCounts) -> None:
    for keyword, name in (
        ("NumberOfCompletedSuboperations", "completed"),
        ("NumberOfFailedSuboperations", "failed"),
        ("NumberOfWarningSuboperations", "warning"),
        ("NumberOfRemainingSuboperations", "remaining"),
    ):
        value = status.get(keyword)
        if value is not None:
            setattr(counts, name, int(value))


def c_move_study(
    settings: ServiceSettings,
    study_uid: str,
    progress: Callable[[MoveCounts], None] | None = None,
) -> MoveCounts:
    """C-MOVE study ``study_uid`` from ``dimse_qr_peer`` to medsight's own AE title.

    ``progress`` gets the counts after each answer.  Returns them once the PACS says every
    sub-operation completed (warnings allowed).

    Raises
    ------
    InvalidInputError
        See :func:`check_move_settings`.
    MoveError
        The PACS refused the move, moved nothing, or some sub-operations failed; the message
        names the study and the counts.
    DeliveryError
        The PACS refused the association or did not answer.
    """
    from pydicom import Dataset
    from pynetdicom.sop_class import (  # type: ignore[attr-defined]
        StudyRootQueryRetrieveInformationModelMove as MOVE,
    )

    peer = check_move_settings(settings)
    ident = Dataset()
    ident.QueryRetrieveLevel = "STUDY"
    ident.StudyInstanceUID = study_uid
    counts, code = MoveCounts(), None
    with _association(settings, MOVE, MOVE_TIMEOUT_S) as assoc:
        for status, _identifier in assoc.send_c_move(ident, settings.ae_title, MOVE):
            code = status.get("Status") if status else None
            if code is None:
                break
            _counts(status, counts)
            if progress is not None:
                progress(counts)
    what = f"study {study_uid}"
    if code is None:
        raise MoveError(
            what, f"C-MOVE from {peer} got no answer ({counts.summary()})", counts=counts
        )
    if code == _DESTINATION_UNKNOWN or (code not in (_SUCCESS, _WARNING) and not counts.completed):
        raise MoveError(
            what,
            f"{peer} refused or broke off the C-MOVE (status 0x{code:04X}; {counts.summary()})",
            hint=f"does the PACS know medsight's AE title {settings.ae_title!r} at "
            f"{settings.dimse_host}:{settings.dimse_port} as a move destination?",
            counts=counts,
        )
    if code not in (_SUCCESS, _WARNING) or counts.failed:
        raise MoveError(
            what,
            f"C-MOVE from {peer} was partial (status 0x{code:04X}; {counts.summary()}); the "
            "instances that arrived are kept",
            counts=counts,
        )
    if not counts.completed:
        raise MoveError(what, f"{peer} moved no instance ({counts.summary()})", counts=counts)
    return counts
