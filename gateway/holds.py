"""Operator holds (DOMAIN.md §5): pause/resume an invoice, a debtor or an administration (fully or reminders
only), and the debtor flags "do not send invoices" and "no final reminder". A hold takes effect at once: the
sender re-reads holds when it claims a message.
"""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from gateway.sendstate import administration_id
from gateway.tables import debtors, holds, invoices

DEBTOR_FLAGS = ("no_invoices", "no_final_reminder")


def find_target(conn: Connection, code: str, invoice: str | None, debtor: str | None) -> tuple[int, str, int, str]:
    """(administration id, scope, target id, description) of a pause; LookupError for an unknown one."""
    admin_id = administration_id(conn, code)
    if admin_id is None:
        raise LookupError(f"administration {code} has no imported data yet")
    if invoice is not None:
        found = conn.execute(
            sa.select(invoices.c.id).where(invoices.c.administration_id == admin_id, invoices.c.number == invoice)
        ).scalar()
        if found is None:
            raise LookupError(f"administration {code} has no invoice {invoice}")
        return admin_id, "invoice", int(found), f"invoice {invoice}"
    if debtor is not None:
        found = conn.execute(
            sa.select(debtors.c.id).where(debtors.c.administration_id == admin_id, debtors.c.code == debtor)
        ).scalar()
        if found is None:
            raise LookupError(f"administration {code} has no debtor {debtor}")
        return admin_id, "debtor", int(found), f"debtor {debtor}"
    return admin_id, "administration", 0, f"administration {code}"


def set_hold(conn: Connection, admin_id: int, scope: str, target_id: int, flag: str, now: datetime) -> bool:
    """Add a hold; False when it was already there."""
    exists = conn.execute(
        sa.select(holds.c.id).where(
            holds.c.administration_id == admin_id,
            holds.c.scope == scope,
            holds.c.target_id == target_id,
            holds.c.flag == flag,
        )
    ).scalar()
    if exists is not None:
        return False
    conn.execute(
        holds.insert().values(administration_id=admin_id, scope=scope, target_id=target_id, flag=flag, created_at=now)
    )
    return True


def clear_holds(conn: Connection, admin_id: int, scope: str, target_id: int, flags: tuple[str, ...]) -> int:
    """Remove holds; the number removed."""
    result = conn.execute(
        holds.delete().where(
            holds.c.administration_id == admin_id,
            holds.c.scope == scope,
            holds.c.target_id == target_id,
            holds.c.flag.in_(flags),
        )
    )
    return int(result.rowcount)
