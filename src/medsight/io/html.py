"""Render every HTML page of medsight from Jinja templates, through one environment.

One environment for every page (QC, evaluation, the study report and index, the web viewer):
autoescaping on, undefined names are errors.  Templates ship as package data in a
``templates/`` folder beside the package that owns them.  A template name is
``"package:file"``: ``"medsight.reporting:report.html.j2"`` is
``medsight/reporting/templates/report.html.j2``; a bare ``"file"`` is one of the lower layers'
own pages, under ``medsight/io/templates/``.  ``{% extends %}`` and ``{% include %}`` of a bare
name look beside the template that asks, in its package.

Examples
--------
>>> from medsight.io.html import environment, render
>>> environment().from_string("<b>{{ x }}</b>").render(x="<i>")
'<b>&lt;i&gt;</b>'
>>> page = render("medsight.reporting:index.html.j2", rows=[], disclaimer="<script>")
>>> "&lt;script&gt;" in page and "<script>" not in page
True
"""

from __future__ import annotations

import functools
import os
from importlib.resources import files
from pathlib import Path
from typing import Any

from medsight.io.atomic import write_text_atomic

__all__ = ["DEFAULT_PACKAGE", "environment", "render", "template_names", "write_html"]

#: The package whose ``templates/`` folder holds the templates named without a package.
DEFAULT_PACKAGE = "medsight.io"


def _split(name: str) -> tuple[str, str]:
    package, sep, file = name.rpartition(":")
    return (package if sep else DEFAULT_PACKAGE), file


def template_names(package: str = DEFAULT_PACKAGE) -> list[str]:
    """The names, as :func:`render` takes them, of the templates ``package`` ships, sorted.

    Examples
    --------
    >>> template_names("medsight.reporting")
    ['medsight.reporting:index.html.j2', 'medsight.reporting:report.html.j2']
    """
    folder = files(package) / "templates"
    prefix = "" if package == DEFAULT_PACKAGE else f"{package}:"
    return sorted(f"{prefix}{p.name}" for p in folder.iterdir() if p.is_file())


@functools.cache
def environment() -> Any:
    """The shared :class:`jinja2.Environment` (autoescape, ``StrictUndefined``).

    Its ``probability`` filter writes a probability or score the one way every output does
    (two decimals, ``>0.99`` / ``<0.01`` at the extremes, never ``1.00``).

    It loads ``"package:file"`` from ``package``'s ``templates/`` folder (package data).
    """
    import jinja2

    class _Environment(jinja2.Environment):
        def join_path(self, template: str, parent: str) -> str:
            # a bare name in {% extends %} / {% include %} is a sibling of the parent
            if ":" in template or ":" not in parent:
                return template
            return f"{_split(parent)[0]}:{template}"

    def load(name: str) -> str | None:
        package, file = _split(name)
        if not file or "/" in file or "\\" in file or file.startswith("."):
            return None
        try:
            resource = files(package) / "templates" / file
        except ModuleNotFoundError:
            return None
        return resource.read_text("utf-8") if resource.is_file() else None

    env = _Environment(
        loader=jinja2.FunctionLoader(load),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
    )
    env.filters["probability"] = _probability
    return env


def _probability(p: float | None) -> str:
    """The ``probability`` filter: :func:`medsight.core.display.format_probability`."""
    from medsight.core.display import format_probability

    return "" if p is None else format_probability(p)


def render(template_name: str, /, **context: Any) -> str:
    """Render the packaged template ``template_name`` (``"package:file"``) with ``context``."""
    return environment().get_template(template_name).render(**context)


def write_html(path: str | os.PathLike[str], template_name: str, /, **context: Any) -> Path:
    """Render ``template_name`` and write it to ``path`` atomically; return the path."""
    target = Path(path)
    write_text_atomic(target, render(template_name, **context))
    return target
