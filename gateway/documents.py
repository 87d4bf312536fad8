"""Invoice documents (PDF and UBL) in the database: store, link to their invoice, list.

A document names its invoice by number (UBL ``cbc:ID``, a PDF by its file name: ``gateway.document_names``).
It is linked when it arrives if that invoice exists; otherwise it is kept unlinked, and linked by the import
that creates the invoice (``link_waiting_documents``, called from reconcile in the same transaction).
An invoice may get several documents of one kind (a corrected PDF delivered later): all are kept, and the
one received last is the **current** one. The same content delivered twice is a duplicate run, not a
second document.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from gateway.document_names import NamedNumbers, is_pdf_name, stem_of
from gateway.records import Document, Problem, UblDocument, notice, warning
from gateway.store import bulk_insert
from gateway.tables import administrations, document_numbers, documents, invoices
from parsers.detect import Kind


@dataclass(frozen=True)
class Received:
    """Where a document came from: its run, its file row and its place in the archive."""

    administration_id: int
    run_id: int
    file_id: int
    file_name: str
    archived_path: str
    now: datetime


def document_format(kind: Kind, file_name: str) -> str | None:
    """``ubl`` or ``pdf`` when the delivery is a document: by content, or a ``.pdf`` name (checked as a PDF)."""
    if kind is Kind.UBL:
        return "ubl"
    if kind is Kind.PDF or is_pdf_name(file_name):
        return "pdf"
    return None


def document_kind(doc: Document) -> str:
    return "ubl" if isinstance(doc, UblDocument) else "pdf"


def document_details(doc: Document) -> dict[str, Any]:
    if isinstance(doc, UblDocument):
        return doc.as_json()
    return {"version": doc.version, "size": doc.size}


def _best_invoice(document_id: Any, administration_id: Any) -> sa.Select[Any]:
    """The invoice a document names: its first candidate (by rank) that is an invoice of the administration."""
    n, i = document_numbers, invoices
    return (
        sa.select(i.c.id, i.c.number)
        .select_from(n.join(i, sa.and_(i.c.administration_id == administration_id, i.c.number == n.c.number)))
        .where(n.c.document_id == document_id)
        .order_by(n.c.rank)
        .limit(1)
    )


def store_document(conn: Connection, received: Received, doc: Document, named: NamedNumbers) -> list[Problem]:
    """Insert the document and its candidate numbers, and link it now if its invoice is there."""
    kind = document_kind(doc)
    result = conn.execute(
        documents.insert().values(
            administration_id=received.administration_id,
            kind=kind,
            number=named.number,
            run_id=received.run_id,
            file_id=received.file_id,
            file_name=received.file_name,
            archived_path=received.archived_path,
            details=document_details(doc),
            received_at=received.now,
        )
    )
    document_id = int(result.inserted_primary_key[0])  # type: ignore[index]
    bulk_insert(
        conn,
        "document_numbers",
        ["document_id", "rank", "number"],
        [(document_id, rank, number) for rank, number in enumerate(named.candidates)],
    )
    target = conn.execute(_best_invoice(document_id, received.administration_id)).first()
    if target is None:
        return [naming_problem(named, received.file_name) or _waiting(kind, named, received.file_name)]
    earlier = conn.execute(
        sa.select(sa.func.count()).where(documents.c.invoice_id == target.id, documents.c.kind == kind)
    ).scalar_one()
    conn.execute(
        documents.update()
        .where(documents.c.id == document_id)
        .values(invoice_id=target.id, number=target.number, linked_at=received.now)
    )
    message = f"linked to invoice {target.number}"
    if earlier:
        message += f"; it is now the invoice's current {kind} document ({earlier} earlier one(s) kept)"
    return [notice("document_linked", message)]


def naming_problem(named: NamedNumbers, file_name: str) -> Problem | None:
    """A warning when a document names no invoice number at all: it can never be linked."""
    if named.candidates:
        return None
    return warning(
        "document_unnamed",
        f"the file name {file_name!r} names no invoice number (see documents.pattern); the document is kept, unlinked",
    )


def _waiting(kind: str, named: NamedNumbers, file_name: str) -> Problem:
    if named.number is not None:
        what = f"invoice {named.number}"
    else:
        what = f"invoice whose number is in the file name {stem_of(file_name)!r}"
    return notice(
        "document_unlinked",
        f"there is no {what} yet: the {kind} document is kept and linked when the invoice arrives",
    )


def link_waiting_documents(conn: Connection, administration_id: int, run_id: int, now: datetime) -> int:
    """Link every waiting document that names an invoice created by ``run_id``: one set-based UPDATE."""
    d, n, i = documents, document_numbers, invoices
    best = _best_invoice(d.c.id, d.c.administration_id)
    names_new_invoice = sa.exists().where(
        n.c.document_id == d.c.id,
        i.c.administration_id == d.c.administration_id,
        i.c.number == n.c.number,
        i.c.created_run_id == run_id,
    )
    statement = (
        d.update()
        .where(d.c.administration_id == administration_id, d.c.invoice_id.is_(None), names_new_invoice)
        .values(
            invoice_id=best.with_only_columns(i.c.id).scalar_subquery(),
            number=best.with_only_columns(i.c.number).scalar_subquery(),
            linked_at=now,
        )
    )
    return int(conn.execute(statement).rowcount)


def list_documents(
    conn: Connection, *, administration: str | None = None, unlinked: bool = False, limit: int | None = None
) -> list[dict[str, Any]]:
    """Documents, newest first, in the JSON shape of ``documents --json``."""
    d, a, i = documents, administrations, invoices
    newer = d.alias("newer")
    superseded = sa.exists().where(newer.c.invoice_id == d.c.invoice_id, newer.c.kind == d.c.kind, newer.c.id > d.c.id)
    query = (
        sa.select(d, a.c.code, i.c.number.label("invoice"), superseded.label("superseded"))
        .select_from(d.join(a, a.c.id == d.c.administration_id).outerjoin(i, i.c.id == d.c.invoice_id))
        .order_by(d.c.received_at.desc(), d.c.id.desc())
    )
    if administration:
        query = query.where(a.c.code == administration)
    if unlinked:
        query = query.where(d.c.invoice_id.is_(None))
    if limit:
        query = query.limit(limit)
    return [
        {
            "id": r.id,
            "administration": r.code,
            "kind": r.kind,
            "number": r.number,
            "invoice": r.invoice,
            "current": r.invoice is not None and not r.superseded,
            "file": r.file_name,
            "run_id": r.run_id,
            "archived_path": r.archived_path,
            "received_at": r.received_at.isoformat(),
            "linked_at": r.linked_at.isoformat() if r.linked_at else None,
            "details": r.details or {},
        }
        for r in conn.execute(query)
    ]
