"""DICOMweb client (dicomweb-client): QIDO-RS query, WADO-RS retrieve, STOW-RS store."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from medsight.service.errors import DeliveryError
from medsight.service.ingest import Ingested, save_dataset

__all__ = ["pull_study", "query_studies", "search_studies", "store_files"]


def _client(url: str) -> Any:
    from dicomweb_client.api import DICOMwebClient

    return DICOMwebClient(url=url.rstrip("/"))


def search_studies(url: str, **filters: str) -> list[dict[str, Any]]:
    """QIDO-RS: studies matching ``filters`` (DICOM keywords, e.g. ``StudyInstanceUID``)."""
    try:
        return list(_client(url).search_for_studies(search_filters=filters))
    except Exception as exc:  # requests / HTTP errors
        raise DeliveryError(url, f"QIDO-RS query failed ({exc})") from exc


def query_studies(
    url: str, filters: dict[str, str], *, limit: int, fields: Sequence[str] = ()
) -> list[dict[str, Any]]:
    """QIDO-RS: at most ``limit`` studies matching ``filters``, with the extra ``fields``."""
    try:
        found = _client(url).search_for_studies(
            search_filters=filters, limit=limit, fields=list(fields) or None, fuzzymatching=False
        )
    except Exception as exc:  # requests / HTTP errors
        raise DeliveryError(url, f"QIDO-RS query failed ({exc})") from exc
    return list(found)


def search_series(url: str, study_uid: str) -> list[dict[str, Any]]:
    """QIDO-RS: the series of one study."""
    try:
        return list(_client(url).search_for_series(study_instance_uid=study_uid))
    except Exception as exc:
        raise DeliveryError(url, f"QIDO-RS query failed ({exc})") from exc


def pull_study(url: str, study_uid: str, studies_dir: Path) -> Ingested:
    """WADO-RS: retrieve every instance of a study and store it like an upload."""
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian

    try:
        datasets = _client(url).retrieve_study(study_uid)
    except Exception as exc:
        raise DeliveryError(url, f"WADO-RS retrieve of study {study_uid} failed ({exc})") from exc
    into = Ingested()
    for ds in datasets:
        if "TransferSyntaxUID" not in getattr(ds, "file_meta", FileMetaDataset()):
            meta = FileMetaDataset()
            meta.TransferSyntaxUID = ExplicitVRLittleEndian
            meta.MediaStorageSOPClassUID = ds.SOPClassUID
            meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
            ds.file_meta = meta
        save_dataset(ds, studies_dir, into)
    if not into.stored:
        raise DeliveryError(url, f"study {study_uid} has no instances in the PACS")
    return into


def store_files(url: str, files: Sequence[Path]) -> int:
    """STOW-RS: send DICOM files; returns how many were stored."""
    import pydicom

    datasets = [pydicom.dcmread(f) for f in files]
    try:
        _client(url).store_instances(datasets)
    except Exception as exc:
        raise DeliveryError(url, f"STOW-RS failed ({exc})") from exc
    return len(datasets)
