"""POST the analysis' FHIR Bundle to a FHIR server."""

from __future__ import annotations

import json
from pathlib import Path

from medsight.service.errors import DeliveryError

__all__ = ["post_bundle"]


def post_bundle(base_url: str, bundle_file: Path, *, timeout: float = 30.0) -> str:
    """POST ``bundle_file``: a transaction to the base URL, any other Bundle to ``/Bundle``.

    Returns the server's ``Location`` (or status).  Raises :class:`DeliveryError` on a
    non-2xx answer or a network error.
    """
    import httpx

    bundle = json.loads(bundle_file.read_text(encoding="utf-8"))
    base = base_url.rstrip("/")
    url = base if bundle.get("type") in ("transaction", "batch") else f"{base}/Bundle"
    try:
        resp = httpx.post(
            url,
            content=json.dumps(bundle),
            headers={"Content-Type": "application/fhir+json", "Accept": "application/fhir+json"},
            timeout=timeout,
        )
    except httpx.HTTPError as exc:
        raise DeliveryError(url, f"FHIR POST failed ({exc})") from exc
    if resp.status_code >= 300:
        raise DeliveryError(url, f"FHIR server answered {resp.status_code}: {resp.text[:200]}")
    return resp.headers.get("Location", str(resp.status_code))
