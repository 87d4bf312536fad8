"""PDF documents: a cheap structural check, not a full parse (FORMATS.md §4).

A PDF starts with ``%PDF-x.y`` (readers accept it anywhere in the first 1024 bytes) and ends with a
``startxref`` offset and the ``%%EOF`` marker (readers look for it in the last 1024 bytes). A file that is
named ``.pdf`` but does not have both, such as an HTML error page saved under the invoice's name or an upload
cut off half-way, is rejected with the reason. Only the head and the tail of the file are read.
"""

from __future__ import annotations

import os
import re
from typing import BinaryIO

from gateway.errors import RejectFile
from gateway.records import PdfDocument, error

WINDOW = 1024
_HEADER = re.compile(rb"%PDF-(\d\.\d)")
_TRAILER = re.compile(rb"startxref\s+(\d+)\s+%%EOF")


def read_pdf(stream: BinaryIO) -> PdfDocument:
    """Check that ``stream`` is structurally a complete PDF; ``RejectFile`` with the reason otherwise."""
    head = stream.read(WINDOW)
    size = stream.seek(0, os.SEEK_END)
    if not head:
        raise RejectFile([error("empty_file", "the file is empty, not a PDF")])
    header = _HEADER.search(head)
    if header is None:
        raise RejectFile(
            [error("not_a_pdf", "the file is not a PDF: it does not start with the %PDF- header (e.g. %PDF-1.7)")]
        )
    stream.seek(max(size - WINDOW, 0))
    tail = stream.read(WINDOW)
    stream.seek(0)
    if b"%%EOF" not in tail:
        raise RejectFile(
            [
                error(
                    "pdf_truncated",
                    f"the PDF is incomplete: no %%EOF end-of-file marker in its last {WINDOW} bytes "
                    f"({size} bytes received); was the upload cut off?",
                )
            ]
        )
    offsets = [int(m.group(1)) for m in _TRAILER.finditer(tail)]
    if not offsets or offsets[-1] >= size:
        raise RejectFile(
            [error("pdf_damaged", "the PDF is damaged: its end does not point to a cross-reference (startxref)")]
        )
    return PdfDocument(version=header.group(1).decode("ascii"), size=size)
