"""The tutorials under ``docs/tutorials/`` run as written, and do what they tell the reader.

A tutorial marks a shell block as runnable with the HTML comment ``<!-- test: run -->`` on the
line before its ```` ```bash ```` fence (unmarked blocks are shown, not run).  The marked
blocks of one page are joined, in order, into one ``bash -euo pipefail`` script run in a fresh
temporary folder with the project's ``.venv/bin`` first on ``PATH`` and ``MEDSIGHT_HOME`` in
that folder, so variables and background processes carry from block to block as they do in a
reader's shell.  The only overrides are those a page states: the PACS page's first block
(starting Orthanc) is replaced by ``tests/service/pacs_servers.py``'s loopback Orthanc, with
``ORTHANC`` and ``PORT`` set to its address and a free port.  Each test then checks what the
page tells the reader to look at.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TUTORIALS = ROOT / "docs" / "tutorials"
MARK = "<!-- test: run -->"
_FENCE = re.compile(r"^```bash[ \t]*$")


def runnable_blocks(text: str, name: str = "page") -> list[str]:
    """The ```` ```bash ```` blocks of ``text`` that follow a ``<!-- test: run -->`` line.

    Raises
    ------
    ValueError
        A mark not followed by a bash fence, or a fence that is never closed.
    """
    lines = text.splitlines()
    blocks: list[str] = []
    i = 0
    while i < len(lines):
        if lines[i].strip() != MARK:
            i += 1
            continue
        j = i + 1
        while j < len(lines) and not lines[j].strip():
            j += 1
        if j == len(lines) or not _FENCE.match(lines[j]):
            raise ValueError(f"{name}:{i + 1}: {MARK} is not followed by a ```bash block")
        k = j + 1
        while k < len(lines) and lines[k].rstrip() != "```":
            k += 1
        if k == len(lines):
            raise ValueError(f"{name}:{j + 1}: the ```bash block is never closed")
        blocks.append("\n".join(lines[j + 1 : k]))
        i = k + 1
    return blocks


def run_tutorial(
    page: str, folder: Path, env: dict[str, str] | None = None, timeout: float = 240
) -> subprocess.CompletedProcess[str]:
    """Run the marked blocks of ``docs/tutorials/<page>`` in ``folder``; fail with the log."""
    blocks = runnable_blocks((TUTORIALS / page).read_text(encoding="utf-8"), page)
    assert blocks, f"{page} has no {MARK} block"
    script = folder / "tutorial.sh"
    script.write_text("set -euo pipefail\n" + "\n\n".join(blocks) + "\n", encoding="utf-8")
    venv_bin = Path(sys.executable).parent
    full_env = {
        **os.environ,
        "PATH": f"{venv_bin}{os.pathsep}{os.environ.get('PATH', '')}",
        "MEDSIGHT_HOME": str(folder / "medsight-home"),
        "MPLBACKEND": "Agg",
        **(env or {}),
    }
    full_env.pop("MEDSIGHT_SETTINGS", None)
    proc = subprocess.run(
        ["bash", str(script)],
        cwd=folder,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )
    assert proc.returncode == 0, (
        f"{page} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    )
    return proc


def test_runnable_blocks_are_found_in_order_and_bad_marks_fail():
    text = f"x\n{MARK}\n\n```bash\necho 1\n```\n```bash\necho shown\n```\n{MARK}\n```bash\nb\n```\n"
    assert runnable_blocks(text) == ["echo 1", "b"]
    with pytest.raises(ValueError, match="not followed"):
        runnable_blocks(f"{MARK}\n```python\nx\n```\n")
    with pytest.raises(ValueError, match="never closed"):
        runnable_blocks(f"{MARK}\n```bash\necho 1\n")


def test_every_tutorial_has_runnable_blocks_and_a_test():
    pages = sorted(p.name for p in TUTORIALS.glob("*.md"))
    tested = {
        "analyze-study.md",
        "train-classifier.md",
        "segmentation.md",
        "deidentify.md",
        "service-pacs.md",
    }
    assert set(pages) == tested, "a new tutorial needs its test here"
    for page in pages:
        assert runnable_blocks((TUTORIALS / page).read_text(encoding="utf-8"), page), page


def test_analyze_study_tutorial(tmp_path):
    proc = run_tutorial("analyze-study.md", tmp_path)
    report = json.loads((tmp_path / "report-us" / "report.json").read_text())
    status = {m["model_id"].split("@")[0]: m for m in report["models"]}
    for name in ("breastmnist-smallcnn", "busi-lesion-dynunet"):  # what the page says
        assert status[name]["status"] == "withheld"
        assert "grey-scale" in status[name]["reason"]
    assert report["findings"] == []
    assert "sizes are in pixels" in report["study"]["Pixel spacing"]
    html = (tmp_path / "report-us" / "report.html").read_text()
    assert "Withheld: no answer given" in html and "Suggested impression" in html
    assert "withheld  breastmnist-smallcnn" in proc.stdout


def test_train_classifier_tutorial(tmp_path):
    run_tutorial("train-classifier.md", tmp_path)
    evaluation = json.loads((tmp_path / "eval" / "report.json").read_text())
    assert evaluation["split"] == "test" and evaluation["n_cases"] == 40
    metrics = {m["name"]: m for m in evaluation["metrics"]}
    auc = metrics["auc"]
    assert auc["ci_low"] <= auc["value"] <= auc["ci_high"]
    assert auc["value"] > 0.6  # a real signal was learnt (chance is 0.5)
    assert (tmp_path / "eval" / "report.html").is_file()
    report = json.loads((tmp_path / "report-spot" / "report.json").read_text())
    assert report["models"][0]["status"] == "ran"
    finding = report["findings"][0]
    assert finding["finding"]["meaning"] == "spot" and finding["significance"] == "actionable"
    assert "on validation" in finding["reliability"]
    assert 0.0 <= finding["probability"] <= 1.0


def test_segmentation_tutorial(tmp_path):
    proc = run_tutorial("segmentation.md", tmp_path)
    for stage in ("splits.json", "plan.json", "preprocessed.npz"):
        assert (tmp_path / "seg" / stage).is_file()
    assert "target_spacing" in proc.stdout and "patch_size" in proc.stdout
    assert (tmp_path / "fingerprint.json").is_file()
    evaluation = json.loads((tmp_path / "seg-eval" / "report.json").read_text())
    assert evaluation["split"] == "test" and evaluation["tta"] is False
    dice = next(m for m in evaluation["metrics"] if m["name"] == "dice_blob")
    assert 0.0 <= dice["low"] <= dice["value"] <= dice["high"] <= 1.0


def test_deidentify_tutorial(tmp_path):
    import pydicom

    proc = run_tutorial("deidentify.md", tmp_path)
    outputs = sorted((tmp_path / "deid-out").rglob("*.dcm"))
    assert len(outputs) == 2
    for path in outputs:
        ds = pydicom.dcmread(path)
        assert "CompressedSamples" not in str(ds.PatientName)
        assert ds.PatientID not in ("1CT1", "4MR1") and ds.PatientIdentityRemoved == "YES"
        assert ds.get("InstitutionName", "") not in ("JFK IMAGING CENTER", "TOSHIBA")
        raw = path.read_bytes()
        assert b"CompressedSamples" not in raw and b"JFK IMAGING" not in raw
    assert "no leak found" in proc.stdout and proc.stdout.count("ANON^") == 2
    assert not list((tmp_path / "deid-out").rglob("*.csv"))  # the table stays outside OUT
    assert "CompressedSamples^CT1" in (tmp_path / "private" / "reid.csv").read_text()


def _pacs_servers():
    """``tests/service/pacs_servers.py`` (the service tests' Orthanc), loaded by its path."""
    name = "_docs_pacs_servers"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(
        name, ROOT / "tests" / "service" / "pacs_servers.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.mark.integration
def test_service_pacs_tutorial(tmp_path, debian_tool):
    servers = _pacs_servers()
    sbin = Path("/usr/sbin/Orthanc")  # Debian's location, often not on a user's PATH
    binary = str(sbin) if sbin.exists() else debian_tool("Orthanc")
    try:
        servers._dicomweb_plugin()
    except FileNotFoundError:
        debian_tool("libOrthancDicomWeb.so (orthanc-dicomweb)")  # skips locally, fails in CI
    work = tmp_path / "orthanc"
    work.mkdir()
    port = servers.free_port()
    env = {"PORT": str(port)}
    try:
        with servers.run_orthanc(binary, work) as orthanc:
            env["ORTHANC"] = orthanc.url
            proc = run_tutorial("service-pacs.md", tmp_path, env)
    finally:
        pid_file = tmp_path / "serve.pid"
        if pid_file.is_file():  # the page stops it; stop it here too when the page failed
            pid = int(pid_file.read_text())
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
    studies = json.loads((tmp_path / "pacs-studies.json").read_text())
    assert len(studies) == 1  # the one study put into the PACS, found by QIDO-RS
    assert re.search(r"^job \S+: done$", proc.stdout, re.MULTILINE), proc.stdout[-2000:]
    assert '"status":"ok"' in proc.stdout.replace(" ", "")  # /api/health answered
    report = json.loads((tmp_path / "job-report.json").read_text())
    status = {m["model_id"].split("@")[0]: m["status"] for m in report["models"]}
    assert status["breastmnist-smallcnn"] == "withheld" and report["findings"] == []
    assert (tmp_path / "medsight-home" / "medsight.db").is_file()
