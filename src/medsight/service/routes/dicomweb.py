"""DICOMweb (QIDO-RS, WADO-RS, STOW-RS) front of the service's store, under ``/dicomweb``.

Studies hold their received instances and the SEG / SR / SC objects their finished analysis
jobs wrote (:mod:`medsight.service.dicomweb.index`).  The same authentication as the API
applies (bearer token or the viewer's session cookie): any user may read, storing (STOW-RS)
needs the radiologist role.  Reads are audited once a minute per user, study and kind of read
(``dicomweb_search``, ``dicomweb_metadata``, ``dicomweb_retrieve``), so opening a study in a
viewer leaves one record per kind instead of one per frame.

Endpoints (PS3.18): ``GET /studies``, ``/studies/{s}/series``, ``/studies/{s}/instances``,
``/studies/{s}/series/{se}/instances`` (QIDO-RS, ``application/dicom+json``); ``GET
.../metadata`` at study, series and instance level; ``GET`` a study, series or instance
(``multipart/related; type="application/dicom"``, as stored); ``GET .../frames/{n[,m...]}``
and ``.../bulkdata/{tag}`` (``multipart/related; type="application/octet-stream"``); ``POST
/studies`` and ``/studies/{s}`` (STOW-RS).
"""

from __future__ import annotations

import io
import threading
import time
from collections.abc import Sequence
from typing import Annotated, Any

import pydicom
from fastapi import APIRouter, Path, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response
from pydicom.dataset import Dataset
from sqlalchemy import select

from medsight.core.errors import InvalidInputError
from medsight.service.auth import User
from medsight.service.deps import CurrentUser, RadiologistUser, Services, ServicesDep
from medsight.service.dicomweb.frames import NotAcceptable, bulk_value, frames
from medsight.service.dicomweb.index import Instance, InstanceIndex, study_files
from medsight.service.dicomweb.multipart import accepted_syntaxes, read_parts, write_parts
from medsight.service.dicomweb.query import records
from medsight.service.errors import NotFoundError, UploadTooLargeError
from medsight.service.ingest import valid_uid

__all__ = ["router"]

PREFIX = "/dicomweb"
router = APIRouter(prefix=PREFIX, tags=["dicomweb"])
_JSON = "application/dicom+json"
_UID = Annotated[str, Path(pattern=r"^[0-9]+(\.[0-9]+)*$", max_length=64)]
_BULK_THRESHOLD = 64 * 1024


class _ReadLog:
    """When each (user, study, action) was last audited, per app."""

    def __init__(self) -> None:
        self.seen: dict[tuple[str, str, str], float] = {}
        self.lock = threading.Lock()

    def due(self, key: tuple[str, str, str], every_s: float = 60.0) -> bool:
        stamp = time.monotonic()
        with self.lock:
            if stamp - self.seen.get(key, -1e9) < every_s:
                return False
            self.seen[key] = stamp
            return True


def _index(request: Request) -> InstanceIndex:
    state = request.app.state
    if getattr(state, "dicomweb_index", None) is None:
        state.dicomweb_index = InstanceIndex()
    return state.dicomweb_index  # type: ignore[no-any-return]


def _audit(services: Services, user: User, action: str, study: str, **what: Any) -> None:
    """Record a read once a minute per (user, study, action)."""
    log = services.__dict__.setdefault("_dicomweb_reads", _ReadLog())
    if not log.due((user.username, study, action)):
        return
    services.audit.record(user.username, user.role.value, action, study=study or None, **what)


def _params(request: Request) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for key, value in request.query_params.multi_items():
        out.setdefault(key, []).append(value)
    return out


def _study_uids(services: Services, wanted: Sequence[str]) -> list[str]:
    from medsight.service.models import StudyRow

    with services.store.session() as ses:
        q = select(StudyRow.uid)
        uids = {u for w in wanted for u in w.replace("\\", ",").split(",") if u.strip()}
        if uids:
            q = q.where(StudyRow.uid.in_(sorted(uids)))
        return list(ses.scalars(q))


def _instances(request: Request, services: Services, study: str) -> list[Instance]:
    services.store.get_study(study)  # 404 for an unknown study
    files = study_files(services.settings, services.store, study)
    return _index(request).instances(files, study)


def _pick(
    instances: list[Instance], series: str | None = None, sop: str | None = None
) -> list[Instance]:
    out = [
        i
        for i in instances
        if (series is None or i.series == series) and (sop is None or i.sop == sop)
    ]
    if not out:
        what = f"instance {sop}" if sop else f"series {series}"
        raise NotFoundError(what, "is not in this study")
    return out


def _json(datasets: list[dict[str, Any]]) -> JSONResponse:
    return JSONResponse(datasets, media_type=_JSON, headers={"Cache-Control": "private"})


def _qido(request: Request, instances: list[Instance], level: str) -> JSONResponse:
    found = records(instances, level, _params(request))
    return _json([ds.to_json_dict(suppress_invalid_tags=True) for ds in found])


# QIDO-RS -------------------------------------------------------------------------------------
@router.get("/studies")
def search_studies(request: Request, services: ServicesDep, user: CurrentUser) -> JSONResponse:
    """QIDO-RS study search."""
    params = _params(request)
    instances: list[Instance] = []
    for uid in _study_uids(
        services, params.get("StudyInstanceUID", []) + params.get("0020000D", [])
    ):
        files = study_files(services.settings, services.store, uid)
        instances += _index(request).instances(files, uid)
    response = _qido(request, instances, "study")
    _audit(services, user, "dicomweb_search", "", query=str(request.query_params)[:200])
    return response


@router.get("/studies/{study}/series")
def search_series(
    study: _UID, request: Request, services: ServicesDep, user: CurrentUser
) -> JSONResponse:
    """QIDO-RS series search in one study."""
    response = _qido(request, _instances(request, services, study), "series")
    _audit(services, user, "dicomweb_search", study)
    return response


@router.get("/studies/{study}/instances")
def search_study_instances(
    study: _UID, request: Request, services: ServicesDep, user: CurrentUser
) -> JSONResponse:
    """QIDO-RS instance search in one study."""
    response = _qido(request, _instances(request, services, study), "instance")
    _audit(services, user, "dicomweb_search", study)
    return response


@router.get("/studies/{study}/series/{series}/instances")
def search_series_instances(
    study: _UID, series: _UID, request: Request, services: ServicesDep, user: CurrentUser
) -> JSONResponse:
    """QIDO-RS instance search in one series."""
    found = _pick(_instances(request, services, study), series)
    response = _qido(request, found, "instance")
    _audit(services, user, "dicomweb_search", study)
    return response


# WADO-RS metadata ----------------------------------------------------------------------------
def _metadata(request: Request, inst: Instance) -> dict[str, Any]:
    base = str(request.base_url).rstrip("/") + PREFIX
    uri = f"{base}/studies/{inst.study}/series/{inst.series}/instances/{inst.sop}/bulkdata/"

    def bulk(elem: pydicom.DataElement) -> str:
        return uri + f"{elem.tag:08X}"

    out = inst.header.to_json_dict(
        bulk_data_threshold=_BULK_THRESHOLD,
        bulk_data_element_handler=bulk,
        suppress_invalid_tags=True,
    )
    if inst.pixel_keyword is not None:
        tag = {"PixelData": "7FE00010", "FloatPixelData": "7FE00008"}.get(
            inst.pixel_keyword, "7FE00009"
        )
        vr = {"7FE00008": "OF", "7FE00009": "OD"}.get(tag, "OB")
        if tag == "7FE00010" and int(inst.header.get("BitsAllocated", 8)) > 8:
            vr = "OW"
        out[tag] = {"vr": vr, "BulkDataURI": uri + tag}
    # the client needs the transfer syntax to decode frames sent as stored
    out["00020010"] = {"vr": "UI", "Value": [inst.transfer_syntax]}
    return out


def _metadata_response(
    request: Request, services: Services, user: User, study: str, chosen: list[Instance]
) -> JSONResponse:
    _audit(services, user, "dicomweb_metadata", study)
    return _json([_metadata(request, i) for i in chosen])


@router.get("/studies/{study}/metadata")
def study_metadata(
    study: _UID, request: Request, services: ServicesDep, user: CurrentUser
) -> JSONResponse:
    """WADO-RS metadata of every instance of the study."""
    chosen = _instances(request, services, study)
    return _metadata_response(request, services, user, study, chosen)


@router.get("/studies/{study}/series/{series}/metadata")
def series_metadata(
    study: _UID, series: _UID, request: Request, services: ServicesDep, user: CurrentUser
) -> JSONResponse:
    """WADO-RS metadata of every instance of one series."""
    chosen = _pick(_instances(request, services, study), series)
    return _metadata_response(request, services, user, study, chosen)


@router.get("/studies/{study}/series/{series}/instances/{sop}/metadata")
def instance_metadata(
    study: _UID,
    series: _UID,
    sop: _UID,
    request: Request,
    services: ServicesDep,
    user: CurrentUser,
) -> JSONResponse:
    """WADO-RS metadata of one instance."""
    chosen = _pick(_instances(request, services, study), series, sop)
    return _metadata_response(request, services, user, study, chosen)


# WADO-RS retrieve ----------------------------------------------------------------------------
def _multipart(parts: list[tuple[bytes, str]], type_: str) -> Response:
    body, ctype = write_parts(parts, type_)
    return Response(body, media_type=ctype, headers={"Cache-Control": "private"})


def _retrieve(services: Services, user: User, study: str, chosen: list[Instance]) -> Response:
    _audit(services, user, "dicomweb_retrieve", study)
    parts = [(i.path.read_bytes(), "application/dicom") for i in chosen]
    return _multipart(parts, "application/dicom")


@router.get("/studies/{study}")
def retrieve_study(
    study: _UID, request: Request, services: ServicesDep, user: CurrentUser
) -> Response:
    """WADO-RS: every instance of the study as stored."""
    return _retrieve(services, user, study, _instances(request, services, study))


@router.get("/studies/{study}/series/{series}")
def retrieve_series(
    study: _UID, series: _UID, request: Request, services: ServicesDep, user: CurrentUser
) -> Response:
    """WADO-RS: every instance of one series as stored."""
    return _retrieve(services, user, study, _pick(_instances(request, services, study), series))


@router.get("/studies/{study}/series/{series}/instances/{sop}")
def retrieve_instance(
    study: _UID,
    series: _UID,
    sop: _UID,
    request: Request,
    services: ServicesDep,
    user: CurrentUser,
) -> Response:
    """WADO-RS: one instance as stored."""
    chosen = _pick(_instances(request, services, study), series, sop)
    return _retrieve(services, user, study, chosen)


@router.get("/studies/{study}/series/{series}/instances/{sop}/frames/{numbers}")
def retrieve_frames(
    study: _UID,
    series: _UID,
    sop: _UID,
    numbers: Annotated[str, Path(pattern=r"^[0-9]+(,[0-9]+)*$", max_length=2000)],
    request: Request,
    services: ServicesDep,
    user: CurrentUser,
) -> Response:
    """WADO-RS frames (1-based, comma separated) in a transfer syntax the Accept header allows.

    ``transfer-syntax=*`` gets the frames as stored; otherwise they are decoded to Explicit VR
    Little Endian if needed, and a syntax that can be neither gets a 406.
    """
    (inst,) = _pick(_instances(request, services, study), series, sop)[:1]
    accepted = accepted_syntaxes(request.headers.get("accept", ""))
    try:
        data, syntax = frames(inst.path, [int(n) for n in numbers.split(",")], accepted)
    except NotAcceptable as err:
        return JSONResponse({"detail": str(err)}, status_code=406)
    _audit(services, user, "dicomweb_retrieve", study)
    ctype = f"application/octet-stream; transfer-syntax={syntax}"
    return _multipart([(d, ctype) for d in data], "application/octet-stream")


@router.get("/studies/{study}/series/{series}/instances/{sop}/bulkdata/{tag}")
def retrieve_bulkdata(
    study: _UID,
    series: _UID,
    sop: _UID,
    tag: Annotated[str, Path(pattern=r"^[0-9A-Fa-f]{8}$")],
    request: Request,
    services: ServicesDep,
    user: CurrentUser,
) -> Response:
    """WADO-RS bulk data: the value of one top-level binary element (e.g. 7FE00010)."""
    from pydicom.datadict import keyword_for_tag

    (inst,) = _pick(_instances(request, services, study), series, sop)[:1]
    keyword = keyword_for_tag(int(tag, 16))
    if not keyword:
        raise InvalidInputError(f"bulk data {tag}", "is not a known DICOM tag")
    value = bulk_value(inst.path, keyword)
    _audit(services, user, "dicomweb_retrieve", study)
    return _multipart([(value, "application/octet-stream")], "application/octet-stream")


# STOW-RS -------------------------------------------------------------------------------------
def _stow_result(stored: list[Dataset], failed: list[tuple[str, str, str]]) -> dict[str, Any]:
    """The PS3.18 STOW-RS response dataset."""
    ds = Dataset()
    ok = []
    for item in stored:
        ref = Dataset()
        ref.ReferencedSOPClassUID = item.SOPClassUID
        ref.ReferencedSOPInstanceUID = item.SOPInstanceUID
        ok.append(ref)
    if ok:
        ds.ReferencedSOPSequence = ok
    bad = []
    for sop_class, sop, _why in failed:
        ref = Dataset()
        if sop_class:
            ref.ReferencedSOPClassUID = sop_class
        if sop:
            ref.ReferencedSOPInstanceUID = sop
        ref.FailureReason = 0xC000  # cannot understand / refused
        bad.append(ref)
    if bad:
        ds.FailedSOPSequence = bad
    return ds.to_json_dict()


def _store(services: Services, body: bytes, ctype: str, study: str | None) -> tuple[Any, ...]:
    from medsight.service.ingest import Ingested, save_dataset
    from medsight.service.jobs import record_studies

    into = Ingested()
    stored: list[Dataset] = []
    failed: list[tuple[str, str, str]] = []
    for data, part_type in read_parts(body, ctype):
        if not part_type.lower().startswith("application/dicom"):
            failed.append(("", "", f"part of type {part_type} is not application/dicom"))
            continue
        try:
            ds = pydicom.dcmread(io.BytesIO(data))
        except Exception as exc:
            failed.append(("", "", f"not a readable DICOM file ({type(exc).__name__})"))
            continue
        if study is not None and str(ds.get("StudyInstanceUID", "")) != study:
            failed.append((str(ds.get("SOPClassUID", "")), str(ds.get("SOPInstanceUID", "")), ""))
            continue
        try:
            save_dataset(ds, services.settings.home / "studies", into)
        except InvalidInputError as err:
            failed.append(
                (str(ds.get("SOPClassUID", "")), str(ds.get("SOPInstanceUID", "")), str(err))
            )
            continue
        stored.append(ds)
    record_studies(services, into, source="stow")
    return stored, failed, sorted(into.studies)


async def _stow(
    request: Request, services: Services, user: User, study: str | None
) -> JSONResponse:
    limit = services.settings.max_upload_bytes
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise UploadTooLargeError("STOW-RS body", f"is larger than the limit of {limit} bytes")
    stored, failed, studies = await run_in_threadpool(
        _store, services, bytes(body), request.headers.get("content-type", ""), study
    )
    for uid in studies:
        services.audit.record(user.username, user.role.value, "dicomweb_store", study=uid)
    status = 200 if not failed else 202 if stored else 409
    return JSONResponse(_stow_result(stored, failed), status_code=status, media_type=_JSON)


@router.post("/studies")
async def store_instances(
    request: Request, services: ServicesDep, user: RadiologistUser
) -> JSONResponse:
    """STOW-RS: store the instances of a multipart/related body (radiologist role)."""
    return await _stow(request, services, user, None)


@router.post("/studies/{study}")
async def store_study_instances(
    study: _UID, request: Request, services: ServicesDep, user: RadiologistUser
) -> JSONResponse:
    """STOW-RS into one study: instances of another study are refused."""
    if not valid_uid(study):  # pragma: no cover - the path pattern already checks
        raise InvalidInputError("study uid", "is not a DICOM UID")
    return await _stow(request, services, user, study)
