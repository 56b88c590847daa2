"""The documentation site builds with ``mkdocs build --strict`` (no broken link or anchor, no page
left out of the nav, the generated command reference included) and needs nothing online."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _mkdocs() -> list[str]:
    try:
        import material  # noqa: F401  (the theme)
        import mkdocs  # noqa: F401
    except ImportError:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("mkdocs / mkdocs-material missing (scripts/setup.sh installs .[docs])")
        pytest.skip("mkdocs / mkdocs-material not installed (pip install -e '.[docs]')")
    return [sys.executable, "-m", "mkdocs"]


def test_site_builds_strict(tmp_path):
    site = tmp_path / "site"
    config = ROOT / "mkdocs.yml"
    proc = subprocess.run(
        [*_mkdocs(), "build", "--strict", "--config-file", str(config), "--site-dir", str(site)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        stdin=subprocess.DEVNULL,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    pages = {
        "index.html",
        "clinician-guide.html",
        "conformance.html",
        "reference/cli.html",
        *(f"tutorials/{p.stem}.html" for p in (ROOT / "docs" / "tutorials").glob("*.md")),
    }
    for page in pages:
        assert (site / page).is_file(), page
    cli = (site / "reference" / "cli.html").read_text(encoding="utf-8")
    for command in ("medsight analyze", "medsight deid", "medsight train classify"):
        assert command in cli
    assert not (site / "hooks").exists()  # the build hook is not published
    # offline: no web fonts or scripts from another host
    index = (site / "index.html").read_text(encoding="utf-8")
    assert "fonts.googleapis.com" not in index and "fonts.gstatic.com" not in index


def test_clinician_guide_covers_every_zoo_model():
    guide = (ROOT / "docs" / "clinician-guide.md").read_text(encoding="utf-8")
    zoo = ROOT / "src" / "medsight" / "zoo"
    models = [p.parent.name for p in zoo.glob("*/model.json")]
    assert models
    missing = [name for name in models if f"`{name}`" not in guide]
    assert not missing, f"docs/clinician-guide.md: add intended use and limits of {missing}"


def test_clinician_guide_weak_flags_match_the_code():
    from medsight.analysis.detection import detector_weakness
    from medsight.models import ModelPackage
    from medsight.models.reliability import weakness

    guide = (ROOT / "docs" / "clinician-guide.md").read_text(encoding="utf-8")
    rows = {line.split("`")[1]: line for line in guide.splitlines() if line.startswith("| `")}
    for folder in (ROOT / "src" / "medsight" / "zoo").glob("*/model.json"):
        spec = ModelPackage.load(folder.parent).spec
        if spec.task == "detection":
            weak = detector_weakness(spec) is not None
        elif spec.task in ("binary", "multiclass", "ordinal", "multilabel"):
            weak = weakness(spec) is not None
        else:
            weak = False  # segmentation and denoising models carry no weak flag
        said = "flagged **weak**" in rows[folder.parent.name]
        assert said == weak, f"{folder.parent.name}: the guide says weak={said}, the code {weak}"
