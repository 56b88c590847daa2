"""The triage worklist."""

from __future__ import annotations

import dataclasses
from typing import Annotated

from fastapi import APIRouter, Query

from medsight.service.deps import Auditor, CurrentUser, ServicesDep
from medsight.service.worklist import worklist

router = APIRouter(prefix="/api/worklist", tags=["worklist"])


@router.get("")
def get_worklist(
    services: ServicesDep,
    user: CurrentUser,
    audit: Auditor,
    modality: str | None = None,
    status: str | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> list[dict]:
    """Studies flagged by AI first, then by urgency, suspicion and arrival time.

    Filter by ``modality`` (e.g. CT) and ``status`` (queued, running, done, failed, reviewed,
    unreviewed); ``limit`` and ``offset`` page through it.
    """
    items = worklist(services.store, modality=modality, status=status)[offset : offset + limit]
    audit("view_worklist", studies=len(items), modality=modality, status=status)
    return [dataclasses.asdict(i) for i in items]
