"""``medsight guideline NAME --facts FILE``: apply a clinical guideline to JSON facts.

Prints a JSON object with ``category``, ``label``, ``recommendation``, ``rules`` (the ids of the
rules applied), ``items`` (per nodule / lesion) and the rule set's ``ruleset``, ``version``,
``title`` and ``citation``.  ``medsight guideline --list`` prints the shipped rule sets and the
facts each one reads.  Bad facts are one line on stderr naming the file and the field, exit 2.

Examples
--------
>>> import json, tempfile, pathlib
>>> from medsight.cli.app import main
>>> facts = pathlib.Path(tempfile.mkdtemp()) / "facts.json"
>>> _ = facts.write_text(json.dumps({"exam": "baseline",
...     "nodules": [{"type": "solid", "mean_diameter_mm": 9.0}]}))
>>> main(["guideline", "lung-rads", "--facts", str(facts)])  # doctest: +ELLIPSIS
{
  "ruleset": "lung-rads",
  "version": "2022",
...
  "category": "4A",
...
0
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from medsight.core.errors import InvalidInputError, UnreadableFileError


def _describe() -> list[dict[str, Any]]:
    from medsight.clinical.guidelines import list_rulesets

    out = []
    for rs in list_rulesets():
        facts = {k: v.description for k, v in rs.facts.items()}
        entry: dict[str, Any] = {
            "name": rs.name,
            "version": rs.version,
            "title": rs.title,
            "citation": rs.citation.title,
            "facts": facts,
        }
        if rs.items is not None:
            entry["items"] = {rs.items.name: {k: v.description for k, v in rs.items.fields.items()}}
        out.append(entry)
    return out


def _read_facts(path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise UnreadableFileError(path, f"cannot read the facts file ({err.strerror})") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise UnreadableFileError(
            path, f"not valid JSON (line {err.lineno}, column {err.colno})"
        ) from None


def guideline(
    name: Annotated[
        str | None, typer.Argument(help="Rule set: lung-rads, fleischner or birads-us.")
    ] = None,
    facts: Annotated[
        Path | None, typer.Option("--facts", "-f", help="JSON file with the facts.")
    ] = None,
    list_: Annotated[
        bool, typer.Option("--list", help="List the rule sets and the facts they read.")
    ] = False,
) -> None:
    """Apply a clinical guideline (Lung-RADS, Fleischner, BI-RADS US) to JSON facts."""
    if list_:
        typer.echo(json.dumps(_describe(), indent=2))
        return
    if name is None or facts is None:
        raise InvalidInputError(
            "guideline", "needs NAME and --facts FILE", hint="or --list to see the rule sets"
        )
    from medsight.clinical.guidelines import FactsError, evaluate, load_ruleset

    ruleset = load_ruleset(name)
    data = _read_facts(facts)
    try:
        result = evaluate(ruleset, data)
    except FactsError as err:
        raise InvalidInputError(f"{facts}: {err.where}", err.problem, hint=err.hint) from None
    typer.echo(json.dumps(result.to_json_dict(), indent=2))


def register(app: typer.Typer) -> None:
    """Add the ``guideline`` command to ``app``."""
    app.command("guideline")(guideline)
