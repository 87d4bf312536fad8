"""The cheap structural PDF check: header, %%EOF, startxref."""

from __future__ import annotations

import io

import pytest

from gateway.errors import RejectFile
from parsers.pdf import read_pdf


def make_pdf(text: str = "Factuur 2026-0042", version: str = "1.7", padding: int = 0) -> bytes:
    """A small, structurally complete PDF whose startxref points at its cross-reference table."""
    body = (
        f"%PDF-{version}\n%\xe2\xe3\xcf\xd3\n"
        "1 0 obj\n<< /Type /Catalog /Pages 2 0 R >>\nendobj\n"
        "2 0 obj\n<< /Type /Pages /Kids [] /Count 0 >>\nendobj\n"
        f"3 0 obj\n<< /Length {len(text) + padding} >>\nstream\n{text}{' ' * padding}\nendstream\nendobj\n"
    ).encode("latin-1")
    xref = len(body)
    trailer = f"xref\n0 4\n0000000000 65535 f \ntrailer\n<< /Size 4 /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n"
    return body + trailer.encode("ascii")


def test_a_complete_pdf_passes() -> None:
    data = make_pdf()
    doc = read_pdf(io.BytesIO(data))
    assert (doc.version, doc.size) == ("1.7", len(data))


@pytest.mark.parametrize(
    "data",
    [
        b"junk before the header\n" + make_pdf(version="2.0"),  # readers accept the header in the first 1 KB
        make_pdf() + b"\r\n\r\n",  # whitespace after %%EOF
        make_pdf() + make_pdf()[-60:],  # an incremental update: the last startxref counts
        make_pdf(padding=5000),  # larger than both windows
    ],
    ids=["header_offset", "trailing_whitespace", "incremental_update", "large"],
)
def test_tolerated_forms(data: bytes) -> None:
    read_pdf(io.BytesIO(data))


@pytest.mark.parametrize(
    ("data", "code", "fragment"),
    [
        (b"", "empty_file", "empty"),
        (b"<html><body>404 Not Found</body></html>", "not_a_pdf", "does not start with the %PDF- header"),
        (b" " * 1100 + make_pdf(), "not_a_pdf", "%PDF-"),  # header too far in
        (make_pdf(padding=5000)[:3000], "pdf_truncated", "no %%EOF end-of-file marker"),
        (make_pdf()[:-30], "pdf_truncated", "was the upload cut off?"),
        (make_pdf().replace(b"startxref", b"startxxef"), "pdf_damaged", "startxref"),
        (make_pdf().replace(b"startxref\n", b"startxref\n9"), "pdf_damaged", "startxref"),  # offset beyond the end
    ],
    ids=["empty", "html", "late_header", "truncated_middle", "truncated_tail", "no_startxref", "bad_offset"],
)
def test_claims_to_be_pdf_but_is_not(data: bytes, code: str, fragment: str) -> None:
    with pytest.raises(RejectFile) as caught:
        read_pdf(io.BytesIO(data))
    [problem] = caught.value.problems
    assert problem.code == code and fragment in problem.message and problem.row is None
