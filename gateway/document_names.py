"""Which invoice number does a document's file name name? Pure decisions (DOMAIN.md §4, FORMATS.md §4).

With the administration's ``documents.pattern`` (a regular expression searched in the file name's stem), the
number is its group ``number``, or the whole match when it has no group: one number, or none when it does
not match. Without a pattern (the default), the stem must contain the invoice number, bounded by the stem's
ends or by characters that are not letters or digits: ``141234.pdf``, ``Invoice 141234.pdf`` and
``Factuur_2026-0042 (kopie).pdf`` name ``141234`` and ``2026-0042``, but ``INV1412345.pdf`` does not name
``141234``. Which invoices exist is not known here (a PDF may arrive before its invoice), so the default
gives every such span of the stem as a candidate, most specific first: longer spans before shorter ones,
then left to right. The database links the document to the first candidate that is an invoice number.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import PurePosixPath

from gateway.records import Document, UblDocument

MAX_NUMBER = 255  # the invoices table's number column
MAX_RUNS = 10  # a candidate spans at most this many runs of letters and digits


@dataclass(frozen=True)
class NamedNumbers:
    """``number``: the one number a name gives (pattern match); ``candidates``: all numbers it may name."""

    number: str | None
    candidates: tuple[str, ...]


def is_pdf_name(file_name: str) -> bool:
    """True when the file name claims a PDF (extension ``.pdf``, any case)."""
    return file_name.lower().endswith(".pdf")


def decide_document_numbers(doc: Document, file_name: str, pattern: str = "") -> NamedNumbers:
    """A UBL document names its invoice by ``cbc:ID``; a PDF by its file name."""
    if isinstance(doc, UblDocument):
        return NamedNumbers(doc.number, (doc.number,))
    return decide_numbers(file_name, pattern)


def stem_of(file_name: str) -> str:
    """The file name without folders and without its last extension: ``a/Invoice 12.pdf`` → ``Invoice 12``."""
    name = PurePosixPath(file_name.replace("\\", "/")).name
    return name.rsplit(".", 1)[0] if "." in name[1:] else name


def decide_numbers(file_name: str, pattern: str = "") -> NamedNumbers:
    stem = stem_of(file_name)
    if pattern:
        match = re.search(pattern, stem)
        if match is None:
            return NamedNumbers(None, ())
        number = match.group("number") if "number" in match.re.groupindex else match.group(0)
        number = (number or "").strip()
        if not number or len(number) > MAX_NUMBER:
            return NamedNumbers(None, ())
        return NamedNumbers(number, (number,))
    return NamedNumbers(None, default_candidates(stem))


def default_candidates(stem: str) -> tuple[str, ...]:
    """Every span of ``stem`` that starts and ends on a letter or digit with a non-alphanumeric (or the stem's
    end) on either side; most specific first (longest, then leftmost)."""
    runs = [(m.start(), m.end()) for m in re.finditer(r"[^\W_]+", stem)]
    spans: list[tuple[int, int, str]] = []
    for i, (start, _) in enumerate(runs):
        for _, end in runs[i : i + MAX_RUNS]:
            if end - start > MAX_NUMBER:
                break
            spans.append((-(end - start), start, stem[start:end]))
    seen: set[str] = set()
    ordered = []
    for _, _, text in sorted(spans):
        if text not in seen:
            seen.add(text)
            ordered.append(text)
    return tuple(ordered)
