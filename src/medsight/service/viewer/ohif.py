"""OHIF Viewer v3 under ``/ohif/``, reading the service's DICOMweb front (same origin).

``scripts/setup-viewer.sh`` fetches the built viewer (npm package ``@ohif/app``, its
``dist/``) into ``.cache/ohif/current/dist`` of the checkout; the ``viewer_dist`` setting
(``MEDSIGHT_VIEWER_DIST``) points elsewhere.  Without it ``/ohif/`` answers a 404 page that
says how to install it, and the worklist hides its OHIF links (:func:`ohif_available`).

The build expects to live at ``/``: the files that name that public path (``index.html``,
the webpack runtime of the entry and worker bundles, ``url(/...)`` in style sheets) are served
with ``/ohif/`` instead, rewritten once in memory, so the installed ``dist/`` stays as
shipped.  ``app-config.js`` is generated: one DICOMweb data source at ``<origin>/dicomweb``,
which the browser reaches with the session cookie of the worklist, so OHIF needs no login of
its own.  OHIF's service worker (it loads Workbox from a CDN) is replaced by a no-op: nothing
leaves the hospital.

A segmentation of an image without patient geometry (a photograph, an uncalibrated ultrasound,
a PNG converted to DICOM: no Pixel Spacing, orientation or Frame of Reference) cannot be placed
by OHIF 3.12: its SEG viewport reads the shared Pixel Measures item (``TypeError: Cannot
destructure property 'SpacingBetweenSlices'``, the whole viewer goes black) and its loader
(cornerstone adapters ``checkOrientation``) a Plane Orientation, which such a SEG rightly does
not have (:mod:`medsight.reporting.dicom_seg`). medsight does not invent an orientation; the
viewer route instead opens such a study with its other series only (OHIF's
``SeriesInstanceUIDs`` filter) and shows a notice saying why and where the segmentation is
shown (medsight's study page), see :func:`ohif_notice`.
"""

from __future__ import annotations

import dataclasses
import functools
import json
from collections.abc import Iterable
from html import escape
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response
from pydicom.dataset import Dataset

from medsight.core.errors import MedsightError
from medsight.service.auth import authenticate
from medsight.service.deps import COOKIE, Services, ServicesDep
from medsight.service.settings import ServiceSettings

if TYPE_CHECKING:
    from medsight.service.dicomweb.index import InstanceIndex

__all__ = [
    "BASE",
    "OhifSeries",
    "app_config",
    "ohif_available",
    "ohif_notice",
    "ohif_series",
    "router",
    "unplaceable_segmentations",
    "viewer_dist",
]

BASE = "/ohif/"
router = APIRouter(include_in_schema=False)
_MARKER = b'__webpack_require__.p = "/";'
_MISSING = """<!doctype html><html lang="en"><head><meta charset="utf-8">
<title>OHIF viewer not installed - medsight</title></head><body>
<h1>The OHIF viewer is not installed</h1>
<p>medsight serves OHIF Viewer v3 here once its build is installed. On the server, run
<code>bash scripts/setup-viewer.sh</code> in the medsight checkout (it needs npm), or point
the <code>viewer_dist</code> setting (<code>MEDSIGHT_VIEWER_DIST</code>) at an OHIF
<code>dist/</code> folder, then restart <code>medsight serve</code>.</p>
<p><a href="/ui/worklist">Back to the worklist</a></p></body></html>"""


def default_dist() -> Path:
    """``.cache/ohif/current/dist`` of the checkout medsight runs from."""
    import medsight

    return Path(medsight.__file__).resolve().parents[2] / ".cache" / "ohif" / "current" / "dist"


def viewer_dist(settings: ServiceSettings) -> Path:
    """The OHIF ``dist/`` folder the service serves (it may not exist)."""
    configured = getattr(settings, "viewer_dist", None)
    return Path(configured) if configured else default_dist()


def ohif_available(settings: ServiceSettings) -> bool:
    """Whether an OHIF build is installed where :func:`viewer_dist` points."""
    dist = viewer_dist(settings)
    return (dist / "index.html").is_file() and (dist / "app-config.js").is_file()


def app_config(dicomweb_path: str = "/dicomweb") -> str:
    """The generated ``app-config.js``: one DICOMweb data source on this origin.

    Examples
    --------
    >>> "routerBasename: '/ohif'" in app_config()
    True
    """
    source = {
        "namespace": "@ohif/extension-default.dataSourcesModule.dicomweb",
        "sourceName": "medsight",
        "configuration": {
            "friendlyName": "medsight",
            "name": "medsight",
            "qidoSupportsIncludeField": True,
            "supportsReject": False,
            "supportsStow": True,
            "imageRendering": "wadors",
            "thumbnailRendering": "wadors",
            "enableStudyLazyLoad": True,
            "supportsFuzzyMatching": True,
            "supportsWildcard": True,
            "staticWado": False,
            "singlepart": False,
            "bulkDataURI": {"enabled": True},
            "omitQuotationForMultipartRequest": True,
        },
    }
    root = json.dumps(dicomweb_path)
    return f"""/* generated by medsight (medsight.service.viewer.ohif); edits are lost */
(function () {{
  var root = window.location.origin + {root};
  var source = {json.dumps(source, indent=2)};
  source.configuration.qidoRoot = root;
  source.configuration.wadoRoot = root;
  source.configuration.wadoUriRoot = root;
  window.config = {{
    routerBasename: '{BASE.rstrip("/")}',
    extensions: [],
    modes: [],
    customizationService: {{}},
    showStudyList: true,
    maxNumberOfWebWorkers: 3,
    showWarningMessageForCrossOrigin: false,
    showCPUFallbackMessage: true,
    showLoadingIndicator: true,
    strictZSpacingForVolumeViewport: true,
    defaultDataSourceName: 'medsight',
    maxNumRequests: {{ interaction: 100, thumbnail: 75, prefetch: 25 }},
    showErrorDetails: 'always',
    dataSources: [source],
  }};
}})();
"""


@functools.lru_cache(maxsize=4)
def _to_patch(dist: str, mtime_ns: int) -> frozenset[str]:
    """Names of the build's top-level scripts that set the webpack public path to ``/``."""
    return frozenset(p.name for p in Path(dist).glob("*.js") if _MARKER in p.read_bytes())


@functools.lru_cache(maxsize=16)
def _patched(path: str, mtime_ns: int) -> bytes:
    """A dist file with its public path ``/`` turned into :data:`BASE` (cached by version)."""
    text = Path(path).read_text(encoding="utf-8")
    if path.endswith(".html"):
        text = text.replace("window.PUBLIC_URL = '/'", f"window.PUBLIC_URL = '{BASE}'")
        text = text.replace('href="/', f'href="{BASE}').replace('src="/', f'src="{BASE}')
    elif path.endswith(".css"):
        text = text.replace("url(/", f"url({BASE}")
    else:
        text = text.replace('__webpack_require__.p = "/";', f'__webpack_require__.p = "{BASE}";')
    return text.encode("utf-8")


@dataclasses.dataclass(frozen=True)
class OhifSeries:
    """A study's series as the OHIF route offers them."""

    shown: tuple[str, ...]  # SeriesInstanceUIDs OHIF is given
    hidden: tuple[str, ...]  # SEG series it cannot place (see unplaceable_segmentations)
    notice: str  # why they are left out and where they are shown ('' when none are)


def unplaceable_segmentations(headers: Iterable[Dataset]) -> list[Dataset]:
    """The SEG headers among ``headers`` that OHIF 3.12 cannot place on their image.

    Its SEG loader needs a Plane Orientation (Patient) in the shared or the first per-frame
    functional group; a SEG on an image without patient geometry has none (the SEG IOD
    requires it only with a Frame of Reference).

    Examples
    --------
    >>> from pydicom.dataset import Dataset
    >>> seg = Dataset()
    >>> seg.Modality = "SEG"
    >>> seg.SharedFunctionalGroupsSequence = [Dataset()]
    >>> len(unplaceable_segmentations([seg]))
    1
    """
    out = []
    for header in headers:
        if header.get("Modality") != "SEG":
            continue
        groups = list(header.get("SharedFunctionalGroupsSequence") or [])
        groups += list(header.get("PerFrameFunctionalGroupsSequence") or [])[:1]
        if not any("PlaneOrientationSequence" in group for group in groups):
            out.append(header)
    return out


def ohif_series(services: Services, uid: str, index: InstanceIndex | None = None) -> OhifSeries:
    """Which series of study ``uid`` OHIF can show, and the notice about the SEGs it cannot.

    For the pages too: the worklist or study page can state ``notice`` beside the OHIF link.
    ``index``: the DICOMweb front's header cache (a fresh one reads the headers again).
    """
    from medsight.service.dicomweb.index import InstanceIndex, study_files

    index = index or InstanceIndex()
    files = study_files(services.settings, services.store, uid)
    headers = [i.header for i in index.instances(files, study=uid)]
    hidden = unplaceable_segmentations(headers)
    hidden_uids = {str(h.SeriesInstanceUID) for h in hidden}
    series = dict.fromkeys(str(h.SeriesInstanceUID) for h in headers)
    return OhifSeries(
        shown=tuple(s for s in series if s not in hidden_uids),
        hidden=tuple(sorted(hidden_uids)),
        notice=ohif_notice(hidden, uid),
    )


def _series_split(request: Request, services: Services, uid: str) -> OhifSeries:
    from medsight.service.dicomweb.index import InstanceIndex

    state = request.app.state
    if getattr(state, "dicomweb_index", None) is None:  # shared with the DICOMweb front
        state.dicomweb_index = InstanceIndex()
    return ohif_series(services, uid, state.dicomweb_index)


def ohif_notice(hidden: Iterable[Dataset], uid: str) -> str:
    """The sentence OHIF shows for SEGs it cannot display ('' when there are none).

    Examples
    --------
    >>> from pydicom.dataset import Dataset
    >>> seg = Dataset()
    >>> seg.SeriesNumber, seg.SeriesDescription = 88, "medsight AI segmentation"
    >>> ohif_notice([seg], "1.2.3").split(":")[0]
    'Segmentation series 88 (medsight AI segmentation) is not shown in OHIF'
    """
    names = [
        f"{h.get('SeriesNumber', '?')} ({h.get('SeriesDescription') or 'no description'})"
        for h in hidden
    ]
    if not names:
        return ""
    return (
        f"Segmentation series {', '.join(names)} {'is' if len(names) == 1 else 'are'} not shown"
        " in OHIF: the segmented image has no pixel spacing or patient orientation, which OHIF"
        " needs to place a segmentation (medsight does not invent them). The segmentation of"
        f" an image without pixel spacing is shown in medsight's own viewer: /ui/studies/{uid}"
    )


def _with_notice(html: bytes, notice: str, uid: str) -> bytes:
    """The app page with a fixed banner stating ``notice`` (a link to the study page)."""
    text, _, _ = notice.rpartition(": /ui/studies/")
    banner = (
        '<div id="medsight-notice" role="status" style="position:fixed;left:0;right:0;bottom:0;'
        'z-index:10000;padding:6px 12px;background:#fff3cd;color:#222;font:14px sans-serif">'
        f'{escape(text)}: <a href="/ui/studies/{escape(uid)}">the study page</a>.</div>'
    )
    return html.replace(b"</body>", banner.encode("utf-8") + b"</body>", 1)


def _signed_in(request: Request, services: ServicesDep) -> bool:
    token = request.cookies.get(COOKIE)
    if not token:
        return False
    try:
        authenticate(services.store, token)
    except MedsightError:
        return False
    return True


@router.get("/ohif")
def _ohif_root() -> RedirectResponse:
    return RedirectResponse(BASE, status_code=307)


@router.get(BASE + "{path:path}")
def ohif_file(path: str, request: Request, services: ServicesDep) -> Response:
    """A file of the OHIF build, the generated config, or the app page for any viewer route."""
    dist = viewer_dist(services.settings)
    if not ohif_available(services.settings):
        return HTMLResponse(_MISSING, status_code=404)
    if path == "app-config.js":
        return Response(app_config(), media_type="text/javascript")
    if path in ("init-service-worker.js", "sw.js"):
        return Response("/* medsight: no service worker */\n", media_type="text/javascript")
    root = dist.resolve()
    file = (root / path).resolve()
    if path and file.is_file() and file.is_relative_to(root):
        patch = _to_patch(str(root), root.stat().st_mtime_ns)
        if file.suffix in (".html", ".css") or (file.parent == root and file.name in patch):
            stamp = file.stat().st_mtime_ns
            media = {".html": "text/html", ".css": "text/css"}.get(file.suffix, "text/javascript")
            return Response(_patched(str(file), stamp), media_type=media)
        return FileResponse(file)
    # a viewer route (/ohif/viewer?StudyInstanceUIDs=...): the app page, for signed-in users
    if not _signed_in(request, services):
        return RedirectResponse("/ui/login", status_code=303)
    index = root / "index.html"
    html = _patched(str(index), index.stat().st_mtime_ns)
    study = request.query_params.get("StudyInstanceUIDs", "")
    if study and "," not in study:
        split = _series_split(request, services, study)
        shown, notice = split.shown, split.notice
        chosen = any(k.lower().startswith("seriesinstanceuid") for k in request.query_params)
        if notice and shown and not chosen:  # open it without the SEG OHIF cannot place
            query = [*request.query_params.multi_items(), ("SeriesInstanceUIDs", ",".join(shown))]
            return RedirectResponse(f"{BASE}{path}?{urlencode(query)}", status_code=303)
        if notice:
            html = _with_notice(html, notice, study)
    return Response(html, media_type="text/html", headers={"Cache-Control": "no-cache"})
