"""A connector's snapshot written as a payt-csv file, so that it is validated, applied, archived and
released exactly like a delivered file (same parser, same row rules, same archive, ``release`` re-reads it).

The columns are the spec's own (``schemas/payt-csv.columns.json``): each record field is written under its
canonical column name; dates as ``yyyy-mm-dd``, amounts as plain decimals, booleans ``true``/``false``.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from datetime import date, datetime
from decimal import Decimal
from typing import BinaryIO

from gateway.records import Entry
from parsers.column_spec import ColumnSpec, load_spec


def _cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return format(value, "f")
    return str(value)


def record_columns() -> list[ColumnSpec]:
    return [c for c in load_spec().columns if c.record in ("debtor", "invoice") and c.field]


def write_snapshot_csv(entries: Iterable[Entry], out: BinaryIO) -> int:
    """Write ``entries`` to ``out`` (UTF-8, ``;``-separated, RFC 4180 quoting); the number of rows."""
    columns = record_columns()
    text = io.TextIOWrapper(out, encoding="utf-8", newline="", write_through=True)
    try:
        writer = csv.writer(text, delimiter=";", lineterminator="\r\n")
        writer.writerow([c.name for c in columns])
        rows = 0
        for entry in entries:
            records = {"debtor": entry.debtor, "invoice": entry.invoice}
            writer.writerow([_cell(getattr(records[c.record], c.field)) for c in columns])  # type: ignore[index,arg-type]
            rows += 1
        text.flush()
        return rows
    finally:
        text.detach()
