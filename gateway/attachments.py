"""Which documents go with an invoice's message: its current PDF and, if present, its current UBL (DOMAIN.md
§4, §7). The current document of a kind is the one received last (``gateway.documents``); its bytes are the
archived file under data_dir. A document whose archived file is gone is left out and logged, never guessed.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import sqlalchemy as sa
import structlog
from sqlalchemy.engine import Connection

from gateway.messages import Attachment
from gateway.tables import documents

log = structlog.get_logger("gateway.attachments")
CONTENT_TYPES = {"pdf": "application/pdf", "ubl": "application/xml"}


def find_attachments(conn: Connection, data_dir: Path, invoice_ids: Sequence[int]) -> dict[int, list[Attachment]]:
    """The current documents of each invoice in ``invoice_ids``: PDF first, then UBL."""
    if not invoice_ids:
        return {}
    d = documents
    newer = d.alias("newer")
    superseded = sa.exists().where(newer.c.invoice_id == d.c.invoice_id, newer.c.kind == d.c.kind, newer.c.id > d.c.id)
    query = (
        sa.select(d.c.invoice_id, d.c.kind, d.c.file_name, d.c.archived_path)
        .where(d.c.invoice_id.in_(list(invoice_ids)), ~superseded)
        .order_by(d.c.invoice_id, d.c.kind)
    )
    found: dict[int, list[Attachment]] = {}
    for invoice_id, kind, file_name, archived_path in conn.execute(query):
        path = data_dir / archived_path
        if not path.is_file():
            log.warning("document_file_missing", invoice_id=invoice_id, kind=kind, path=archived_path)
            continue
        name = Path(file_name).name or f"{kind}.{'pdf' if kind == 'pdf' else 'xml'}"
        found.setdefault(invoice_id, []).append(
            Attachment(name, CONTENT_TYPES.get(kind, "application/octet-stream"), path)
        )
    return found
