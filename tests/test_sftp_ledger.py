"""The SFTP upload ledger writes its queue in order, in batches, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from gateway.sftp_accounts import add_account, load_account
from gateway.sftp_ledger import UploadLedger
from gateway.sftp_tables import sftp_uploads
from gateway.store import transaction

NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def rows(engine: Engine) -> list[tuple[str, str, str, int]]:
    with transaction(engine, write=False) as conn:
        query = sa.select(
            sftp_uploads.c.administration, sftp_uploads.c.file_name, sftp_uploads.c.status, sftp_uploads.c.size
        ).order_by(sftp_uploads.c.id)
        return [tuple(r) for r in conn.execute(query)]  # type: ignore[misc]


def test_uploads_renames_and_removals_keep_their_order(engine: Engine) -> None:
    with transaction(engine) as conn:
        add_account(conn, "acme-export", ["ACME", "BETA"], [], "not-a-real-hash", NOW)
        account = load_account(conn, "acme-export")
    assert account is not None
    ledger = UploadLedger(engine, lambda: NOW)  # not started: flush() writes
    ledger.uploaded(account, "ACME", "a.csv", 10, "0" * 64, "127.0.0.1")
    ledger.uploaded(account, "ACME", "b.csv", 20, "1" * 64, "127.0.0.1")
    ledger.uploaded(account, "BETA", "a.csv", 30, "2" * 64, "127.0.0.1")  # same name, other administration
    ledger.uploaded(account, "ACME", "a.csv", 11, "3" * 64, "127.0.0.1")  # replaces the first a.csv
    ledger.renamed(account.id, ("ACME", "b.csv"), ("ACME", "c.csv"))
    ledger.uploaded(account, "ACME", "d.csv", 40, "4" * 64, "127.0.0.1")
    ledger.removed("ACME", "d.csv")
    ledger.uploaded(account, "ACME", "c.csv", 21, "5" * 64, "127.0.0.1")  # replaces the renamed b.csv
    ledger.flush()
    assert rows(engine) == [
        ("ACME", "a.csv", "removed", 10),
        ("ACME", "c.csv", "removed", 20),
        ("BETA", "a.csv", "uploaded", 30),
        ("ACME", "a.csv", "uploaded", 11),
        ("ACME", "d.csv", "removed", 40),
        ("ACME", "c.csv", "uploaded", 21),
    ]
    # the quota counts what is still waiting to be imported: the three uploads left
    assert ledger.reserve(account.id, 38, 100)
    assert not ledger.reserve(account.id, 1, 100)
