"""``medsight guideline``: JSON out, ``--list``, and one-line errors with exit code 2."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from medsight.cli.app import main


def _facts(tmp_path: Path, data: object, name: str = "facts.json") -> Path:
    path = tmp_path / name
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    return path


def test_lung_rads_prints_category_recommendation_rules_and_citation(tmp_path, capsys) -> None:
    path = _facts(
        tmp_path,
        {
            "exam": "follow-up",
            "significant_other_findings": True,
            "nodules": [
                {"type": "solid", "mean_diameter_mm": 5.0, "status": "new"},
                {
                    "type": "part-solid",
                    "mean_diameter_mm": 7.0,
                    "solid_component_mm": 2.0,
                    "status": "new",
                },
            ],
        },
    )
    assert main(["guideline", "lung-rads", "--facts", str(path)]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["category"] == "4A" and out["display"] == "4AS"
    assert out["recommendation"].startswith("3-month LDCT")
    assert out["rules"] == ["LR-SOLID-NEW-3", "LR-PS-NEWGROW-4A", "LR-S"]
    assert [i["category"] for i in out["items"]] == ["3", "4A"]
    assert (out["ruleset"], out["version"]) == ("lung-rads", "2022")
    assert "Lung-RADS" in out["citation"]["title"] and out["citation"]["url"].startswith("https")


@pytest.mark.parametrize(
    ("name", "facts", "category"),
    [
        (
            "fleischner",
            {"risk": "low", "nodules": [{"type": "solid", "mean_diameter_mm": 6}]},
            "ct-6-12m-consider-18-24m",
        ),
        ("birads-us", {"lesions": [{"shape": "oval"}]}, "0"),
    ],
)
def test_other_guidelines(tmp_path, capsys, name: str, facts: dict, category: str) -> None:
    assert main(["guideline", name, "--facts", str(_facts(tmp_path, facts))]) == 0
    assert json.loads(capsys.readouterr().out)["category"] == category


def test_list(capsys) -> None:
    assert main(["guideline", "--list"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [r["name"] for r in listed] == ["birads-us", "fleischner", "lung-rads"]
    lung = listed[2]
    assert "exam" in lung["facts"] and "mean_diameter_mm" in lung["items"]["nodules"]


@pytest.mark.parametrize(
    ("args", "data", "expected"),
    [
        (
            ["lung-rads"],
            {"exam": "baseline", "nodules": [{"type": "solid", "mean_diameter_mm": "x"}]},
            "facts.json: nodules[0].mean_diameter_mm: Input should be a valid number",
        ),
        (["lung-rads"], {"nodules": []}, "facts.json: exam: Field required"),
        (["lung-rads"], "{not json", "facts.json: not valid JSON (line 1, column 2)"),
        (["pi-rads"], {}, "pi-rads: unknown guideline"),
        ([], {}, "needs NAME and --facts FILE"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(tmp_path, args, data, expected) -> None:
    path = _facts(tmp_path, data)
    proc = subprocess.run(
        [sys.executable, "-m", "medsight.cli.app", "guideline", *args, "--facts", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and expected in lines[0] and "Traceback" not in proc.stderr
    assert proc.stdout == ""


def test_missing_facts_file_exits_2(tmp_path, capsys) -> None:
    assert main(["guideline", "lung-rads", "--facts", str(tmp_path / "nope.json")]) == 2
    assert "nope.json: cannot read the facts file" in capsys.readouterr().err
