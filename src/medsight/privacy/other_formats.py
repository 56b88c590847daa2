"""De-identify NIfTI headers and PNG/JPEG metadata, leaving the pixels bit for bit.

* NIfTI-1/2 (``.nii``, ``.nii.gz``): the free-text fields ``descrip``, ``aux_file``,
  ``intent_name`` and ``db_name`` are blanked and header extensions (which may hold a whole
  DICOM header) are dropped; the voxel bytes are copied unchanged.  Gzip output has no time
  stamp or file name, so the same input gives the same bytes.
* PNG: ancillary text and metadata chunks (``tEXt``, ``zTXt``, ``iTXt``, ``eXIf``, ``tIME``) are
  dropped; image chunks are copied.
* JPEG: APP1..APP15 segments (EXIF, XMP, IPTC, ...) and comments (COM) are dropped; APP0
  (JFIF) and the compressed scan are copied, so nothing is re-encoded.

Examples
--------
>>> import io
>>> from PIL import Image, PngImagePlugin
>>> info = PngImagePlugin.PngInfo()
>>> info.add_text("Author", "Dr. Jane Roe")
>>> buf = io.BytesIO()
>>> Image.new("L", (4, 4)).save(buf, "PNG", pnginfo=info)
>>> b"Jane Roe" in buf.getvalue(), b"Jane Roe" in clean_png(buf.getvalue())
(True, False)
"""

from __future__ import annotations

import gzip
import io
import struct
from pathlib import Path

from medsight.privacy.errors import DeidError

__all__ = ["NIFTI_TEXT_FIELDS", "clean_jpeg", "clean_nifti", "clean_png", "metadata_strings"]

NIFTI_TEXT_FIELDS = ("descrip", "aux_file", "intent_name", "db_name")
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_DROP = {b"tEXt", b"zTXt", b"iTXt", b"eXIf", b"tIME"}


def is_nifti(path: Path) -> bool:
    """Whether the name says NIfTI (``.nii`` or ``.nii.gz``)."""
    return path.name.lower().endswith((".nii", ".nii.gz"))


def clean_nifti(data: bytes, *, name: str = "image.nii", gzipped: bool | None = None) -> bytes:
    """Return the NIfTI file ``data`` with its free-text fields and extensions removed."""
    import nibabel as nib

    gzipped = name.lower().endswith(".gz") if gzipped is None else gzipped
    raw = gzip.decompress(data) if gzipped else data
    try:
        header_class = (
            nib.Nifti2Header
            if struct.unpack("<i", raw[:4])[0] in (540, 0x1C020000)
            else nib.Nifti1Header
        )
        header = header_class.from_fileobj(io.BytesIO(raw), check=False)
    except Exception as exc:  # nibabel raises several types for bad headers
        raise DeidError(name, f"not a readable NIfTI header ({exc})") from exc
    if header.get("magic", b"") not in (b"n+1", b"n+2"):
        raise DeidError(name, "only single-file NIfTI (.nii) is supported, not .hdr/.img pairs")
    voxels = raw[int(header["vox_offset"]) :]
    for field in NIFTI_TEXT_FIELDS:
        if field in header:
            header[field] = b""
    header.extensions.clear()
    offset = header.single_vox_offset
    header["vox_offset"] = offset
    buf = io.BytesIO()
    header.write_to(buf)
    out = buf.getvalue()
    out = out + b"\0" * (offset - len(out)) + voxels
    if gzipped:
        out = gzip.compress(out, compresslevel=6, mtime=0)
    return out


def clean_png(data: bytes, *, name: str = "image.png") -> bytes:
    """Return the PNG ``data`` without text and metadata chunks."""
    if not data.startswith(_PNG_SIGNATURE):
        raise DeidError(name, "not a PNG file (bad signature)")
    out = [_PNG_SIGNATURE]
    pos = len(_PNG_SIGNATURE)
    while pos + 8 <= len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind = data[pos + 4 : pos + 8]
        end = pos + 12 + length
        if end > len(data):
            raise DeidError(name, "truncated PNG chunk")
        if kind not in _PNG_DROP:
            out.append(data[pos:end])
        pos = end
        if kind == b"IEND":
            break
    return b"".join(out)


def clean_jpeg(data: bytes, *, name: str = "image.jpg") -> bytes:
    """Return the JPEG ``data`` without APP1-APP15 and COM segments."""
    if not data.startswith(b"\xff\xd8"):
        raise DeidError(name, "not a JPEG file (no SOI marker)")
    out = [data[:2]]
    pos = 2
    while pos + 4 <= len(data):
        if data[pos] != 0xFF:
            raise DeidError(name, f"corrupt JPEG marker at byte {pos}")
        marker = data[pos + 1]
        if marker == 0xDA:  # start of scan: the rest is entropy-coded data and EOI
            out.append(data[pos:])
            break
        (length,) = struct.unpack(">H", data[pos + 2 : pos + 4])
        end = pos + 2 + length
        if 0xE1 <= marker <= 0xEF or marker == 0xFE:
            pos = end
            continue
        out.append(data[pos:end])
        pos = end
    return b"".join(out)


def metadata_strings(path: Path) -> list[str]:
    """Printable strings (4+ characters) in the metadata of a NIfTI, PNG or JPEG file.

    The leak checker searches the output for these.
    """
    data = path.read_bytes()
    blobs: list[bytes] = []
    lower = path.name.lower()
    if is_nifti(path):
        import nibabel as nib

        img = nib.load(path)
        blobs += [bytes(img.header[f]) for f in NIFTI_TEXT_FIELDS if f in img.header]
        blobs += [
            ext.get_content() if isinstance(ext.get_content(), bytes) else b""
            for ext in img.header.extensions
        ]
    elif lower.endswith(".png"):
        blobs += _png_metadata(data)
    elif lower.endswith((".jpg", ".jpeg")):
        blobs += _jpeg_metadata(data)
    found: set[str] = set()
    for blob in blobs:
        for word in blob.replace(b"\0", b"\n").decode("latin-1").splitlines():
            word = word.strip()
            if len(word) >= 4 and word.isprintable():
                found.add(word)
    return sorted(found)


def _png_metadata(data: bytes) -> list[bytes]:
    pos, blobs = len(_PNG_SIGNATURE), []
    while pos + 8 <= len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        if data[pos + 4 : pos + 8] in _PNG_DROP:
            blobs.append(data[pos + 8 : pos + 8 + length])
        pos += 12 + length
    return blobs


def _jpeg_metadata(data: bytes) -> list[bytes]:
    pos, blobs = 2, []
    while pos + 4 <= len(data) and data[pos] == 0xFF and data[pos + 1] != 0xDA:
        (length,) = struct.unpack(">H", data[pos + 2 : pos + 4])
        if 0xE1 <= data[pos + 1] <= 0xEF or data[pos + 1] == 0xFE:
            blobs.append(data[pos + 4 : pos + 2 + length])
        pos += 2 + length
    return blobs
