"""``medsight deid IN OUT`` and ``medsight audit verify LOG``.

``deid`` applies the DICOM PS3.15 Basic Profile (plus the chosen options) to every file under
IN and writes the result to OUT; ``--verify`` then runs the leak checker over IN and OUT, and
``--verify-only`` runs just the leak checker over an existing OUT (with ``--scrub-pixels`` or
the ``hospital-analysis`` profile it also OCRs the output pixels).  Files that are not images
(a README, a DICOMDIR, an encapsulated PDF) are skipped with a note.  ``--report`` writes a
JSON report per file (output path, what was removed from the pixels: boxes, how found, matched
kinds, text masked; never a value in clear).  Leaks are printed with the value masked.  Exit
code 0: everything written (and, with ``--verify``, no leak found); 1: some files failed or a
leak was found; 2: nothing could be done (bad arguments, unreadable key file).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

from medsight.core.errors import InvalidInputError
from medsight.privacy.errors import UnsafePathError
from medsight.privacy.profile import (
    DeidConfig,
    Layout,
    Option,
    PixelScrub,
    PixelText,
    Profile,
    profile_defaults,
)

if TYPE_CHECKING:
    from medsight.privacy.batch import DeidReport

audit_app = typer.Typer(help="Audit trail of de-identification runs.", no_args_is_help=True)


def deid(
    in_path: Annotated[Path, typer.Argument(help="Input file or folder (only read).")],
    out_dir: Annotated[Path, typer.Argument(help="Output folder (must not overlap IN).")],
    key_file: Annotated[
        Path | None,
        typer.Option(
            "--key-file",
            help="Pseudonymisation key; created with a random key if missing (required "
            "unless --verify-only).",
        ),
    ] = None,
    profile: Annotated[
        Profile,
        typer.Option(
            "--profile",
            help="basic: PS3.15 Basic Profile and the options given; hospital-analysis: plus "
            "clean-descriptors, retain-modified-dates, retain-patient-characteristics, "
            "retain-device-identity and --scrub-pixels (what analyze needs).",
        ),
    ] = Profile.BASIC,
    option: Annotated[
        list[Option] | None,
        typer.Option("--option", "-o", help="Profile option (repeatable)."),
    ] = None,
    safe_private: Annotated[
        list[str] | None,
        typer.Option(
            "--safe-private",
            help="Private tag to keep under retain-safe-private, as GGGG,[CREATOR]EE.",
        ),
    ] = None,
    reid_table: Annotated[
        Path | None,
        typer.Option("--reid-table", help="Write the re-identification CSV here (not in OUT)."),
    ] = None,
    scrub_pixels: Annotated[
        bool,
        typer.Option(
            "--scrub-pixels",
            help="OCR the images that may carry burned-in text and black the text out.",
        ),
    ] = False,
    scrub_all_images: Annotated[
        bool,
        typer.Option(
            "--scrub-all-images",
            help="With OCR scrubbing, check every image, not only the flagged ones.",
        ),
    ] = False,
    keep_readable_text: Annotated[
        bool,
        typer.Option(
            "--keep-readable-text",
            help="With pixel scrubbing, keep text OCR reads clearly that matches nothing "
            "identifying (L/R, scale markers); default: every text line is blacked out.",
        ),
    ] = False,
    report_path: Annotated[
        Path | None,
        typer.Option("--report", help="Write a JSON report of every file (no values in clear)."),
    ] = None,
    verify: Annotated[
        bool, typer.Option("--verify", help="Run the leak checker over IN and OUT afterwards.")
    ] = False,
    verify_only: Annotated[
        bool,
        typer.Option("--verify-only", help="Do not de-identify: only check OUT for leaks of IN."),
    ] = False,
    layout: Annotated[
        Layout, typer.Option("--layout", help="Output names: new UIDs, or mirror IN.")
    ] = Layout.UID,
    workers: Annotated[int, typer.Option("--workers", min=1, help="Worker processes.")] = 2,
    audit_log: Annotated[
        Path | None,
        typer.Option(
            "--audit-log",
            envvar="MEDSIGHT_AUDIT_LOG",
            help="Append a hash-chained record of this run to this JSON-lines log.",
        ),
    ] = None,
) -> None:
    """De-identify DICOM (PS3.15 Basic Profile and options), NIfTI, PNG and JPEG files."""
    from medsight.privacy.batch import check_paths, deidentify_folder
    from medsight.privacy.keys import PseudonymKey

    preset = profile_defaults(profile)
    scrub = PixelScrub.FLAGGED if scrub_pixels else preset.get("scrub_pixels", PixelScrub.OFF)
    config = DeidConfig.from_options(
        options=frozenset(option or []) | preset["options"],
        safe_private=tuple(safe_private or []),
        scrub_pixels=PixelScrub.ALL if scrub_all_images else scrub,
        pixel_text=PixelText.KEEP_READABLE if keep_readable_text else PixelText.ALL,
        layout=layout,
    )
    if verify_only:
        raise typer.Exit(_check_leaks(in_path, out_dir, config)[0])
    if key_file is None:
        raise InvalidInputError(
            "--key-file",
            "a key file is needed to de-identify",
            hint="name a new file to create a random key, and keep it safe",
        )
    check_paths(in_path, out_dir, reid_table)
    for path, what in ((key_file, "key file"), (audit_log, "audit log")):
        if path is not None and _inside(path, out_dir):
            raise UnsafePathError(path, f"the {what} must not be inside the output folder")
    key = PseudonymKey.load(key_file, create=True)
    report = deidentify_folder(
        in_path,
        out_dir,
        key,
        config,
        reid_table=reid_table,
        workers=workers,
        progress=Console(stderr=True).is_terminal,
    )
    _print_outcomes(report, config)
    if report_path is not None:
        _write_report(report_path, report, config)
        typer.echo(f"report: {report_path}")
    status = 1 if report.failed else 0
    leak_count = None
    if verify:
        leak_status, leak_count = _check_leaks(in_path, out_dir, config)
        status = status or leak_status
    if audit_log is not None:
        argv = _command_line(in_path, out_dir, config, reid_table, verify)
        seq = _audit(audit_log, argv, report, leak_count)
        typer.echo(f"audit: appended record {seq} to {audit_log}")
    raise typer.Exit(status)


def _print_outcomes(report: DeidReport, config: DeidConfig) -> None:
    """Skipped files on stderr; burned-in warnings, scrubbed text and a summary on stdout."""
    for outcome in report.failed:
        typer.echo(f"skipped: {outcome.error}", err=True)
    for outcome in report.skipped:
        typer.echo(f"note: {outcome.source}: {outcome.note}")
    ocr = config.scrub_pixels != PixelScrub.OFF
    hint = " (no text found by OCR: review it)" if ocr else " (use --scrub-pixels or review it)"
    for outcome in report.written:
        if outcome.burned_in and not outcome.scrubbed:
            reasons = "; ".join(outcome.burned_in)
            typer.echo(f"warning: {outcome.source}: may carry burned-in text: {reasons}{hint}")
        for text in outcome.scrubbed:
            typer.echo(f"scrubbed: {outcome.source}: {text}")
    notes = f", {len(report.skipped)} not images (noted)" if report.skipped else ""
    typer.echo(
        f"de-identified {len(report.written)} of {len(report.outcomes)} files into "
        f"{report.out_dir} (key id {report.key_id}); {len(report.failed)} skipped{notes}"
    )


def _write_report(path: Path, report: DeidReport, config: DeidConfig) -> None:
    """The per-file JSON report; inside OUT it leaves out the input paths (they may name)."""
    import json

    from medsight.io.atomic import atomic_path

    in_out = _inside(path, report.out_dir)
    files = []
    for o in report.outcomes:
        entry: dict[str, object] = {
            "output": None if o.output is None else str(o.output),
            "kind": o.kind,
            "status": "failed" if o.error else "noted" if o.note else "written",
            "burned_in_risk": o.burned_in,
            "pixels_removed": o.regions,
        }
        if not in_out:
            entry["source"] = str(o.source)
            entry["error"] = o.error
            entry["note"] = o.note
        files.append(entry)
    data = {
        "key_id": report.key_id,
        "options": sorted(str(x) for x in config.options),
        "scrub_pixels": str(config.scrub_pixels),
        "pixel_text": str(config.pixel_text),
        "files": files,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")


def _audit(log: Path, argv: list[str], report: DeidReport, leak_count: int | None) -> int:
    """Append this run to the audit log; return the record's sequence number."""
    from medsight.privacy.audit import append_entry, digest_files

    inputs = [(str(o.source), str(o.source_sha256)) for o in report.outcomes]
    record = append_entry(
        log,
        command=argv,
        inputs={
            "path": str(report.in_dir.resolve()),
            "files": len(report.outcomes),
            "sha256_digest": digest_files(inputs),
            "skipped": [o.error for o in report.failed],
            "noted": [f"{o.source}: {o.note}" for o in report.skipped],
        },
        key_id=report.key_id,
        outputs=[{"path": str(o.output), "sha256": str(o.sha256)} for o in report.written],
        extra={"out": str(report.out_dir.resolve()), "leak_hits": leak_count},
    )
    return int(record["seq"])


def _check_leaks(in_path: Path, out_dir: Path, config: DeidConfig) -> tuple[int, int]:
    """Run the leak checker, print every hit; return (exit status, number of hits)."""
    from medsight.privacy.leaks import verify as check_leaks

    leaks = check_leaks(in_path, out_dir, config, ocr=config.scrub_pixels != PixelScrub.OFF)
    for hit in leaks.hits:
        typer.echo(f"LEAK: {hit.masked}")
    for hit in leaks.warnings:
        typer.echo(f"warning: ID-like text: {hit.masked}")
    verdict = "no leak found" if leaks.ok else f"{len(leaks.hits)} hits"
    typer.echo(
        f"leak check: {leaks.identifiers} identifying values searched in "
        f"{leaks.files_checked} files: {verdict}"
    )
    return (0 if leaks.ok else 1), len(leaks.hits)


def _inside(path: Path, folder: Path) -> bool:
    path, folder = path.resolve(), folder.resolve()
    return path == folder or folder in path.parents


def _command_line(
    in_path: Path, out_dir: Path, config: DeidConfig, reid: Path | None, verify: bool
) -> list[str]:
    argv = ["medsight", "deid", os.fspath(in_path), os.fspath(out_dir)]
    for opt in sorted(config.options):
        argv += ["--option", str(opt)]
    for tag in config.safe_private:
        argv += ["--safe-private", f"{tag.group:04X},[{tag.creator}]{tag.element:02X}"]
    argv += ["--layout", str(config.layout)]
    if reid is not None:
        argv += ["--reid-table", os.fspath(reid)]
    if config.scrub_pixels != PixelScrub.OFF:
        argv.append("--scrub-pixels")
    if config.scrub_pixels == PixelScrub.ALL:
        argv.append("--scrub-all-images")
    if config.pixel_text == PixelText.KEEP_READABLE:
        argv.append("--keep-readable-text")
    if verify:
        argv.append("--verify")
    return argv


@audit_app.command("verify")
def audit_verify(
    log: Annotated[Path, typer.Argument(help="The JSON-lines audit log.")],
) -> None:
    """Check that no line of LOG was edited, inserted, reordered or removed."""
    from medsight.privacy.audit import verify_log

    result = verify_log(log)
    for problem in result.problems:
        typer.echo(f"TAMPERED: {log}: {problem}")
    if not result.ok:
        raise typer.Exit(1)
    typer.echo(f"ok: {result.entries} records, chain head {result.head}")


def register(app: typer.Typer) -> None:
    """Add ``deid`` and the ``audit`` group to ``app``."""
    app.command("deid")(deid)
    app.add_typer(audit_app, name="audit")
