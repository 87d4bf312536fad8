"""Seeded generator of payt-xml open-items files (FORMATS.md §2) for the ingest benchmarks.

    python benchmarks/generate_xml.py --rows 1000000 --seed 1 --out /tmp/open-items.xml

The same open items as ``generate_csv.py`` with the same arguments (same debtors, invoices and amounts, in
the same order), written in the nested shape: each debtor's data once, its invoices under it. Streamed
(memory does not grow with --rows) and deterministic: the same arguments give the same bytes.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Iterator, Sequence
from datetime import date
from itertools import groupby
from pathlib import Path
from typing import IO
from xml.sax.saxutils import escape, quoteattr

from generate_csv import (
    DEFAULT_AS_OF,
    HEADER,
    Generated,
    base_rows,
    change_count,
    lowered_open_amounts,
    parse_args,
)

NAMESPACE = "urn:payt-gateway:open-items:1"
COLUMN = {name: i for i, name in enumerate(HEADER)}
ADMINISTRATION = "BENCH"


def _element(name: str, value: str, attributes: str = "") -> str:
    return f"<{name}{attributes}>{escape(value)}</{name}>" if value else ""


def debtor_xml(row: Sequence[str]) -> str:
    """The opening tag and contact data of the debtor of ``row`` (element order as in payt-xml-1.xsd)."""

    def cell(name: str) -> str:
        return row[COLUMN[name]]

    company = cell("debtor_is_company") == "1"
    parts = [f"<Debtor code={quoteattr(cell('debtor_code'))} isCompany={quoteattr('true' if company else 'false')}>"]
    parts.append(_element("Name", cell("debtor_company_name")))
    parts.append(_element("FirstName", cell("debtor_firstname")))
    parts.append(_element("LastName", cell("debtor_lastname")))
    parts.append(
        "<Address>"
        + _element("Street1", cell("debtor_post_street_1"))
        + _element("PostalCode", cell("debtor_post_postalcode"))
        + _element("City", cell("debtor_post_city"))
        + _element("Country", cell("debtor_post_country_code"))
        + "</Address>"
    )
    parts.append(_element("Email", cell("debtor_email")))
    parts.append(_element("Email", cell("debtor_invoice_email"), ' type="invoice"'))
    parts.append(_element("Phone", cell("debtor_phone")))
    parts.append(_element("Language", cell("debtor_language_code")))
    parts.append(_element("VatNumber", cell("debtor_vat_number")))
    parts.append(_element("CocNumber", cell("debtor_coc_number")))
    parts.append(_element("Iban", cell("debtor_iban")))
    return "\n    ".join(p for p in parts if p)


def invoice_xml(row: Sequence[str]) -> str:
    def cell(name: str) -> str:
        return row[COLUMN[name]]

    return (
        f"<Invoice number={quoteattr(cell('invoice_number'))}>"
        + _element("InvoiceDate", cell("invoice_date"))
        + _element("DueDate", cell("invoice_due_date"))
        + _element("TotalAmount", cell("invoice_total_amount_inc_vat"))
        + _element("OpenAmount", cell("invoice_open_amount_inc_vat"))
        + _element("Currency", cell("invoice_currency_code"))
        + _element("Description", cell("invoice_description"))
        + _element("PaymentCondition", cell("invoice_payment_condition"))
        + _element("PaymentReference", cell("invoice_payment_reference"))
        + "</Invoice>"
    )


def write_xml(handle: IO[str], rows: Iterable[Sequence[str]], administration: str = ADMINISTRATION) -> None:
    """Rows in payt-csv column order (``HEADER``), a debtor's rows consecutive, as payt-xml."""
    handle.write('<?xml version="1.0" encoding="UTF-8"?>\n')
    handle.write(
        f'<OpenItems xmlns="{NAMESPACE}" administrationCode={quoteattr(administration)} '
        'generatedAt="2026-10-31T01:00:00+01:00" currency="EUR">\n'
    )
    code = COLUMN["debtor_code"]
    for _, group in groupby(rows, key=lambda r: r[code]):
        first = True
        for row in group:
            if first:
                handle.write("  " + debtor_xml(row) + "\n")
                first = False
            handle.write("    " + invoice_xml(row) + "\n")
        handle.write("  </Debtor>\n")
    handle.write("</OpenItems>\n")


def snapshot_rows(
    rows: int, seed: int, change_open_pct: float, from_seed: int | None, as_of: date, invalid_iban_rate: float
) -> Iterator[list[str]]:
    stream = base_rows(rows, seed if from_seed is None else from_seed, as_of, invalid_iban_rate)
    if from_seed is not None:
        stream = lowered_open_amounts(stream, rows, change_open_pct, from_seed, seed)
    return stream


def generate(
    out: Path,
    rows: int,
    seed: int,
    *,
    change_open_pct: float = 0.0,
    from_seed: int | None = None,
    as_of: date = DEFAULT_AS_OF,
    invalid_iban_rate: float = 0.002,
) -> Generated:
    """Write the XML twin of ``generate_csv.generate`` with the same arguments."""
    started = time.perf_counter()
    stream = snapshot_rows(rows, seed, change_open_pct, from_seed, as_of, invalid_iban_rate)
    with out.open("w", encoding="utf-8", newline="\n", buffering=1 << 20) as handle:
        write_xml(handle, stream)
    changed = change_count(rows, change_open_pct) if from_seed is not None else 0
    return Generated(out, rows, changed, time.perf_counter() - started, out.stat().st_size)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    result = generate(
        args.out,
        args.rows,
        args.seed,
        change_open_pct=args.change_open_pct or 0.0,
        from_seed=args.from_seed,
        as_of=args.as_of,
        invalid_iban_rate=args.invalid_iban_pct / 100,
    )
    print(f"wrote {result.rows} invoices, {result.size_bytes / 1e6:.1f} MB to {result.path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
