"""Clinical context from a FHIR Bundle file and from a FHIR server's REST search.

No FHIR server could be installed here from PyPI, Debian or npm in reasonable time (Debian has
none; HAPI FHIR is a Java web application outside those registries; npm's
node-fhir-server-core is a framework that needs MongoDB and resolvers written for it), so the
server tests run against a small stub on 127.0.0.1 (``http.server``) that answers the FHIR REST
shapes the reader uses: ``GET Patient/{id}`` (404 with an OperationOutcome when unknown) and
searchset Bundles for ``Observation``, ``Condition`` and ``DiagnosticReport`` by ``patient``,
paged with ``next`` links.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from tests.service.pacs_servers import serve_http

from medsight.clinical.context import (
    FhirReadError,
    Sex,
    SmokingStatus,
    context_from_bundle,
    context_from_server,
)
from medsight.core.errors import InvalidInputError, MedsightError, UnreadableFileError

ON = dt.date(2026, 1, 15)
LOINC, SCT = "http://loinc.org", "http://snomed.info/sct"


def patient(pid: str, birth: str | None = "1958-03-02", gender: str | None = "male") -> dict:
    res: dict = {"resourceType": "Patient", "id": pid}
    if birth:
        res["birthDate"] = birth
    if gender:
        res["gender"] = gender
    return res


def smoking(oid: str, pid: str, snomed: str, when: str | None, packs: dict | None = None) -> dict:
    res: dict = {
        "resourceType": "Observation",
        "id": oid,
        "status": "final",
        "code": {"coding": [{"system": LOINC, "code": "72166-2"}]},
        "subject": {"reference": f"Patient/{pid}"},
        "valueCodeableConcept": {"coding": [{"system": SCT, "code": snomed}]},
    }
    if when:
        res["effectiveDateTime"] = when
    if packs is not None:
        res["component"] = [
            {"code": {"coding": [{"system": LOINC, "code": "401201-6"}]}, "valueQuantity": packs}
        ]
    return res


def pack_years(oid: str, pid: str, quantity: dict, when: str = "2025-06-01") -> dict:
    return {
        "resourceType": "Observation",
        "id": oid,
        "status": "final",
        "code": {"coding": [{"system": LOINC, "code": "8664-5"}]},
        "subject": {"reference": f"Patient/{pid}"},
        "effectiveDateTime": when,
        "valueQuantity": quantity,
    }


def condition(cid: str, pid: str, codings: list[dict], status: str = "active") -> dict:
    return {
        "resourceType": "Condition",
        "id": cid,
        "clinicalStatus": {
            "coding": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/condition-clinical",
                    "code": status,
                }
            ]
        },
        "code": {"coding": codings},
        "subject": {"reference": f"Patient/{pid}"},
    }


def report(rid: str, pid: str, when: str, conclusion: str, category: str = "RAD") -> dict:
    return {
        "resourceType": "DiagnosticReport",
        "id": rid,
        "status": "final",
        "category": [
            {
                "coding": [
                    {"system": "http://terminology.hl7.org/CodeSystem/v2-0074", "code": category}
                ]
            }
        ],
        "code": {"text": "CT chest"},
        "subject": {"reference": f"Patient/{pid}"},
        "effectiveDateTime": when,
        "conclusion": conclusion,
    }


COPD = {"system": SCT, "code": "13645005", "display": "Chronic obstructive lung disease"}
COPD_ICD = {"system": "http://hl7.org/fhir/sid/icd-10", "code": "J44.9", "display": "COPD"}


def record(pid: str = "p1") -> list[dict]:
    """One patient's record: a smoking history that changed, pack-years, conditions, reports."""
    return [
        patient(pid),
        smoking("s-old", pid, "449868002", "2015-02-01"),  # current then ...
        smoking("s-new", pid, "8517006", "2024-05-10", {"value": 30, "code": "{PackYears}"}),
        condition("c1", pid, [COPD, COPD_ICD]),
        condition("c2", pid, [], "active"),  # not coded: left out with a warning
        report("r1", pid, "2023-04-01", "6 mm solid nodule right upper lobe."),
        report("r2", pid, "2025-04-01", "Stable 6 mm nodule."),
        report("lab", pid, "2025-05-01", "Hb 13", category="LAB"),  # not imaging
    ]


def write_bundle(tmp_path, resources: list[dict], name: str = "record.json"):
    entries = [
        {"fullUrl": f"urn:uuid:{r['resourceType']}-{r.get('id', i)}", "resource": r}
        for i, r in enumerate(resources)
    ]
    path = tmp_path / name
    path.write_text(json.dumps({"resourceType": "Bundle", "type": "collection", "entry": entries}))
    return path


# ---------------------------------------------------------------------------------- Bundle
def test_bundle_context_with_sources(tmp_path):
    path = write_bundle(tmp_path, record())
    ctx = context_from_bundle(path, reference_date=ON)
    assert ctx.patient_id == "p1" and ctx.age_years == 67 and ctx.sex is Sex.MALE
    assert ctx.reference_date == ON and ctx.birth_date == "1958-03-02"
    assert ctx.patient_source.location == str(path)
    assert ctx.patient_source.resource == "Patient/p1"
    smoke = ctx.smoking
    assert smoke is not None
    assert smoke.status is SmokingStatus.FORMER and smoke.recorded == "2024-05-10"  # the latest
    assert smoke.pack_years == 30.0 and smoke.source.resource == "Observation/s-new"
    assert smoke.status_code.code == "8517006" and smoke.status_code.as_code().scheme == "SCT"
    (copd,) = ctx.conditions
    assert [c.code for c in copd.codes] == ["13645005", "J44.9"]
    assert copd.codes[1].as_code().scheme == "I10" and copd.clinical_status == "active"
    assert copd.source.resource == "Condition/c1" and copd.text == COPD["display"]
    assert [(r.date, r.source.resource) for r in ctx.prior_reports] == [
        ("2025-04-01", "DiagnosticReport/r2"),
        ("2023-04-01", "DiagnosticReport/r1"),
    ]
    assert ctx.prior_reports[0].conclusion == "Stable 6 mm nodule."
    assert any("Condition/c2" in w and "not coded" in w for w in ctx.warnings)


def test_two_patients_are_refused_naming_both(tmp_path):
    path = write_bundle(tmp_path, record("p1") + record("p2"))
    with pytest.raises(InvalidInputError) as err:
        context_from_bundle(path, reference_date=ON)
    assert str(path) in str(err.value) and "p1" in str(err.value) and "p2" in str(err.value)
    ctx = context_from_bundle(path, "p2", reference_date=ON)
    assert ctx.patient_id == "p2"
    # only p2's facts, none of p1's
    assert {c.source.resource for c in ctx.conditions} == {"Condition/c1"}
    assert len(ctx.prior_reports) == 2
    with pytest.raises(InvalidInputError, match="no Patient 'p3'"):
        context_from_bundle(path, "p3", reference_date=ON)


def test_unitless_and_contradictory_facts_are_left_out(tmp_path):
    resources = [
        patient("p1", birth="1960", gender=None),  # age 65 or 66 on ON: not guessed
        smoking("a", "p1", "449868002", "2025-01-01"),
        smoking("b", "p1", "266919005", "2025-01-01"),  # same time, another status
        pack_years("py", "p1", {"value": 20}),  # no unit
    ]
    ctx = context_from_bundle(write_bundle(tmp_path, resources), reference_date=ON)
    assert ctx.age_years is None and ctx.sex is None and ctx.smoking is None
    text = "\n".join(ctx.warnings)
    assert "age of 65 or 66" in text
    assert "smoking status contradicts itself" in text and "Observation/a" in text
    assert "pack-years 20.0 with no unit" in text or "pack-years 20 with no unit" in text
    # a partial birth date that fixes the age on this date is used; one that does not is not
    for birth, age in (("1960-12", 65), ("1960-01", None), ("1960-01-15", 66)):
        ctx = context_from_bundle(write_bundle(tmp_path, [patient("p1", birth)]), reference_date=ON)
        assert ctx.age_years == age, birth


def test_separate_pack_years_observation_and_other_subjects(tmp_path):
    resources = [
        patient("p1"),
        smoking("s", "p1", "449868002", "2025-06-01"),
        pack_years("py", "p1", {"value": 42.5, "unit": "pack-years"}),
        condition("x", "someone-else", [COPD]),
    ]
    ctx = context_from_bundle(write_bundle(tmp_path, resources), reference_date=ON)
    assert ctx.smoking is not None and ctx.smoking.status is SmokingStatus.CURRENT
    assert ctx.smoking.pack_years == 42.5
    assert ctx.smoking.pack_years_source is not None
    assert ctx.smoking.pack_years_source.resource == "Observation/py"
    assert ctx.conditions == []
    assert any("Patient/someone-else" in w for w in ctx.warnings)


@pytest.mark.parametrize(
    ("content", "error", "text"),
    [
        ("not json", UnreadableFileError, "is not JSON"),
        ('{"resourceType": "Patient"}', UnreadableFileError, "is not a FHIR Bundle"),
        ('{"resourceType": "Bundle", "type": "collection"}', InvalidInputError, "no Patient"),
        (
            '{"resourceType": "Bundle", "type": "collection", "entry": [{"resource": '
            '{"resourceType": "Patient", "birthDate": "yesterday"}}]}',
            UnreadableFileError,
            "not a valid FHIR R4 Patient",
        ),
    ],
)
def test_bad_files_name_the_file(tmp_path, content, error, text):
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(error, match=text) as err:
        context_from_bundle(path, reference_date=ON)
    assert str(path) in str(err.value) and isinstance(err.value, MedsightError)


def test_invalid_non_patient_entry_is_left_out_with_a_warning(tmp_path):
    bad = {"resourceType": "Observation", "id": "o9", "status": "final"}  # no code
    ctx = context_from_bundle(write_bundle(tmp_path, [patient("p1"), bad]), reference_date=ON)
    assert any("Observation/o9" in w and "left out" in w for w in ctx.warnings)
    robot = context_from_bundle(
        write_bundle(tmp_path, [patient("p1", gender="robot")]), reference_date=ON
    )
    assert robot.sex is None and any("gender 'robot'" in w for w in robot.warnings)


# ---------------------------------------------------------------------------------- server
class _Stub:
    def __init__(self, resources: list[dict], page_size: int) -> None:
        self.resources, self.page_size = resources, page_size
        self.requests: list[str] = []
        self.url = ""


@contextmanager
def fhir_server(resources: list[dict], page_size: int = 2) -> Iterator[_Stub]:
    """A FHIR REST stub: read by id and paged searchsets by ``patient`` (and ``code``)."""
    stub = _Stub(resources, page_size)

    class Handler(BaseHTTPRequestHandler):
        def _send(self, status: int, body: dict) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/fhir+json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            stub.requests.append(self.path)
            parts = urlsplit(self.path)
            segments = parts.path.removeprefix("/fhir/").split("/")
            query = parse_qs(parts.query)
            if len(segments) == 2:  # read
                found = [
                    r
                    for r in stub.resources
                    if r["resourceType"] == segments[0] and r.get("id") == segments[1]
                ]
                if found:
                    return self._send(200, found[0])
                return self._send(
                    404,
                    {
                        "resourceType": "OperationOutcome",
                        "issue": [
                            {"severity": "error", "code": "not-found", "diagnostics": "gone"}
                        ],
                    },
                )
            rtype = segments[0]
            pid = query.get("patient", [""])[0]
            codes = {c.split("|")[-1] for c in ",".join(query.get("code", [])).split(",") if c}
            matches = [
                r
                for r in stub.resources
                if r["resourceType"] == rtype
                and r.get("subject", {}).get("reference") == f"Patient/{pid}"
                and (not codes or {c["code"] for c in r["code"]["coding"]} & codes)
            ]
            offset = int(query.get("_offset", ["0"])[0])
            page = matches[offset : offset + stub.page_size]
            links = [{"relation": "self", "url": stub.url + self.path.removeprefix("/fhir")}]
            if offset + stub.page_size < len(matches):
                nxt = f"{stub.url}/{rtype}?patient={pid}&_offset={offset + stub.page_size}"
                if codes:
                    nxt += "&code=" + ",".join(sorted(codes))
                links.append({"relation": "next", "url": nxt})
            body = {
                "resourceType": "Bundle",
                "type": "searchset",
                "total": len(matches),
                "link": links,
                "entry": [{"resource": r, "search": {"mode": "match"}} for r in page],
            }
            return self._send(200, body)

        def log_message(self, *_args) -> None:
            pass

    with serve_http(Handler) as port:
        stub.url = f"http://127.0.0.1:{port}/fhir"
        yield stub


def test_server_search_with_paging_matches_the_bundle(tmp_path):
    resources = record("p1") + record("p2")
    resources += [report(f"extra{i}", "p1", f"2020-01-0{i}", f"report {i}") for i in range(1, 6)]
    with fhir_server(resources, page_size=2) as stub:
        ctx = context_from_server(stub.url, "p1", reference_date=ON)
    paths = stub.requests
    assert paths[0] == "/fhir/Patient/p1"
    assert any(p.startswith("/fhir/Observation?patient=p1&code=") and "72166-2" in p for p in paths)
    assert sum("DiagnosticReport" in p for p in paths) == 4  # 8 reports, 2 a page
    assert ctx.age_years == 67 and ctx.sex is Sex.MALE
    assert ctx.smoking is not None and ctx.smoking.status is SmokingStatus.FORMER
    assert ctx.smoking.pack_years == 30.0
    assert ctx.smoking.source.location == stub.url
    assert ctx.smoking.source.resource == "Observation/s-new"
    assert len(ctx.prior_reports) == 7 and ctx.prior_reports[0].source.resource.endswith("/r2")
    from_file = context_from_bundle(write_bundle(tmp_path, record("p1")), reference_date=ON)
    assert ctx.conditions[0].codes == from_file.conditions[0].codes


def test_server_page_cap_warns(tmp_path):
    resources = [patient("p1")] + [report(f"r{i}", "p1", "2020-01-01", "x") for i in range(6)]
    with fhir_server(resources, page_size=2) as stub:
        ctx = context_from_server(stub.url, "p1", max_pages=2, reference_date=ON)
    assert len(ctx.prior_reports) == 4
    assert any("more than 2 pages" in w for w in ctx.warnings)


def test_server_errors_name_the_url():
    with fhir_server([patient("p1")]) as stub:
        with pytest.raises(InvalidInputError, match="no such Patient") as err:
            context_from_server(stub.url, "nobody", reference_date=ON)
        assert f"{stub.url}/Patient/nobody" in str(err.value)
        with pytest.raises(InvalidInputError, match="not a FHIR id"):
            context_from_server(stub.url, "p1&_count=1000", reference_date=ON)
        url = stub.url
    with pytest.raises(FhirReadError, match="unreachable") as err:  # the stub is stopped
        context_from_server(url, "p1", timeout=2, reference_date=ON)
    assert url in str(err.value)


def test_server_error_status_and_foreign_next_link():
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/Patient/p1"):
            return httpx.Response(200, json=patient("p1"))
        if "Observation" in request.url.path:
            page = {
                "resourceType": "Bundle",
                "type": "searchset",
                "link": [{"relation": "next", "url": "http://elsewhere.example/fhir/x"}],
            }
            return httpx.Response(200, json=page)
        return httpx.Response(500, json={"resourceType": "OperationOutcome", "issue": []})

    client = httpx.Client(transport=httpx.MockTransport(handler))
    with pytest.raises(FhirReadError, match="next link leaves the server"):
        context_from_server("http://fhir.test/fhir", "p1", client=client, reference_date=ON)

    def failing(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            503, json={"resourceType": "OperationOutcome", "issue": [{"diagnostics": "busy"}]}
        )

    client = httpx.Client(transport=httpx.MockTransport(failing))
    with pytest.raises(FhirReadError, match=r"answered 503 \(busy\)") as err:
        context_from_server("http://fhir.test/fhir", "p1", client=client, reference_date=ON)
    assert "http://fhir.test/fhir/Patient/p1" in str(err.value)
