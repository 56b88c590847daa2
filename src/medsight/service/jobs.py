"""Submitting studies for analysis (used by uploads, the PACS pull and the C-STORE SCP)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from medsight.service.deps import Services
from medsight.service.ingest import Ingested, StudyFacts, content_digest
from medsight.service.models import JobRow
from medsight.service.settings import Urgency
from medsight.service.worker import study_dir

__all__ = ["record_studies", "submit"]


def record_studies(
    services: Services,
    ingested: Ingested,
    *,
    source: str,
    urgency: Urgency | Mapping[str, Urgency] | None = None,
) -> list[StudyFacts]:
    """Create or update the study rows for what was just stored (``urgency``: one or by UID)."""
    for facts in ingested.studies.values():
        folder = study_dir(services.settings, facts.uid)
        fields: dict[str, object] = {
            "patient_id": facts.patient_id,
            "modalities": ",".join(sorted(facts.modalities)),
            "description": facts.description,
            "body_part": facts.body_part,
            "source": source,
            "n_files": sum(1 for p in folder.rglob("*.dcm") if not p.name.startswith(".")),
        }
        level = urgency.get(facts.uid) if isinstance(urgency, Mapping) else urgency
        if level is not None:
            fields["urgency"] = Urgency(level).value
        services.store.upsert_study(facts.uid, **fields)
    return list(ingested.studies.values())


def submit(
    services: Services, study_uid: str, packages: Sequence[str] | None
) -> tuple[JobRow, bool]:
    """Queue ``study_uid`` with ``packages`` (all when empty); an identical job is reused."""
    services.store.get_study(study_uid)
    ids = [p.id for p in services.catalog.resolve(packages)]
    job, new = services.store.submit(
        study_uid, ids, content_digest(study_dir(services.settings, study_uid))
    )
    if services.worker is not None:
        services.worker.wake()
    return job, new
