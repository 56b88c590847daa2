"""The medsight service: REST API, worker, worklist, PACS / FHIR connectors and web viewer.

``create_app(settings)`` builds the FastAPI app; ``medsight serve`` runs it with uvicorn.
The embedded default needs no other server (SQLite, a local folder, an in-process worker);
PostgreSQL (``database_url``), Orthanc (``dicomweb_url``, DIMSE) and a FHIR server
(``fhir_url``) are configuration, not code changes.
"""

from medsight.service.app import create_app
from medsight.service.settings import Role, RoutingRule, ServiceSettings, Urgency, load_settings

__all__ = ["Role", "RoutingRule", "ServiceSettings", "Urgency", "create_app", "load_settings"]
