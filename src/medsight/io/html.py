"""Render the HTML pages of the lower layers (QC, evaluation) from Jinja templates.

One environment for every page: autoescaping on, undefined names are errors.  Templates ship as
package data under ``medsight/io/templates/``.

Examples
--------
>>> from medsight.io.html import environment
>>> environment().from_string("<b>{{ x }}</b>").render(x="<i>")
'<b>&lt;i&gt;</b>'
"""

from __future__ import annotations

import functools
import os
from importlib.resources import files
from pathlib import Path
from typing import Any

from medsight.io.atomic import write_text_atomic

__all__ = ["environment", "render", "write_html"]


@functools.cache
def environment() -> Any:
    """The shared :class:`jinja2.Environment` (autoescape, ``StrictUndefined``)."""
    import jinja2

    def load(name: str) -> str:
        return (files("medsight.io") / "templates" / name).read_text("utf-8")

    return jinja2.Environment(
        loader=jinja2.FunctionLoader(load),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
    )


def render(template_name: str, /, **context: Any) -> str:
    """Render the packaged template ``template_name`` with ``context``, autoescaped."""
    return environment().get_template(template_name).render(**context)


def write_html(path: str | os.PathLike[str], template_name: str, /, **context: Any) -> Path:
    """Render ``template_name`` and write it to ``path`` atomically; return the path."""
    target = Path(path)
    write_text_atomic(target, render(template_name, **context))
    return target
