"""SFTP accounts in the database: add, list, remove, disable, keys (rotation) and passwords; the login view.

Also the upload ledger: which account uploaded which file (so its feedback can be written once the run ends)
and how many bytes an account has delivered that are not imported yet (its quota).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from gateway.sftp_keys import PublicKey
from gateway.sftp_tables import sftp_account_administrations, sftp_accounts, sftp_keys, sftp_uploads

ACCOUNT_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")


@dataclass(frozen=True)
class StoredKey:
    key_type: str
    key_data: str
    fingerprint: str


@dataclass(frozen=True)
class Account:
    """What a login needs to know about an account."""

    id: int
    name: str
    disabled: bool
    password_hash: str | None
    administrations: tuple[str, ...]
    keys: tuple[StoredKey, ...]


def validate_account_name(name: str) -> None:
    if not ACCOUNT_NAME.match(name):
        raise ValueError(f"account name {name!r}: use 1-64 lower-case letters, digits, '.', '_' or '-'")


def _account_id(conn: Connection, name: str) -> int:
    found = conn.execute(sa.select(sftp_accounts.c.id).where(sftp_accounts.c.name == name)).scalar()
    if found is None:
        raise LookupError(f"there is no SFTP account {name!r}")
    return int(found)


def add_account(
    conn: Connection,
    name: str,
    administrations: Sequence[str],
    keys: Sequence[PublicKey],
    password_hash: str | None,
    now: datetime,
) -> int:
    validate_account_name(name)
    if not administrations:
        raise ValueError("an account needs at least one administration")
    if not keys and password_hash is None:
        raise ValueError("an account needs a public key or a password")
    if conn.execute(sa.select(sftp_accounts.c.id).where(sftp_accounts.c.name == name)).first():
        raise LookupError(f"the SFTP account {name!r} exists already")
    result = conn.execute(
        sa.insert(sftp_accounts).values(
            name=name, disabled=False, password_hash=password_hash, created_at=now, updated_at=now
        )
    )
    account_id = int(result.inserted_primary_key[0])  # type: ignore[index]
    for code in dict.fromkeys(administrations):
        conn.execute(sa.insert(sftp_account_administrations).values(account_id=account_id, administration=code))
    for key in keys:
        _insert_key(conn, account_id, key, now)
    return account_id


def _insert_key(conn: Connection, account_id: int, key: PublicKey, now: datetime) -> None:
    exists = conn.execute(
        sa.select(sftp_keys.c.id).where(
            sftp_keys.c.account_id == account_id, sftp_keys.c.fingerprint == key.fingerprint
        )
    ).first()
    if exists:
        raise LookupError(f"the key {key.fingerprint} is already on this account")
    conn.execute(
        sa.insert(sftp_keys).values(
            account_id=account_id,
            key_type=key.key_type,
            key_data=key.key_data,
            fingerprint=key.fingerprint,
            bits=key.bits,
            comment=key.comment,
            added_at=now,
        )
    )


def add_key(conn: Connection, name: str, key: PublicKey, now: datetime) -> None:
    account_id = _account_id(conn, name)
    _insert_key(conn, account_id, key, now)
    _touch(conn, account_id, now)


def remove_key(conn: Connection, name: str, fingerprint: str, now: datetime) -> None:
    account_id = _account_id(conn, name)
    account = load_account(conn, name)
    assert account is not None
    if not any(k.fingerprint == fingerprint for k in account.keys):
        raise LookupError(f"the account {name!r} has no key {fingerprint}")
    if len(account.keys) == 1 and account.password_hash is None:
        raise ValueError("this is the account's only way to log in; add the new key first, then remove the old one")
    conn.execute(
        sa.delete(sftp_keys).where(sftp_keys.c.account_id == account_id, sftp_keys.c.fingerprint == fingerprint)
    )
    _touch(conn, account_id, now)


def set_password(conn: Connection, name: str, password_hash: str | None, now: datetime) -> None:
    account_id = _account_id(conn, name)
    conn.execute(sa.update(sftp_accounts).where(sftp_accounts.c.id == account_id).values(password_hash=password_hash))
    _touch(conn, account_id, now)


def set_disabled(conn: Connection, name: str, disabled: bool, now: datetime) -> None:
    account_id = _account_id(conn, name)
    conn.execute(sa.update(sftp_accounts).where(sftp_accounts.c.id == account_id).values(disabled=disabled))
    _touch(conn, account_id, now)


def remove_account(conn: Connection, name: str) -> None:
    account_id = _account_id(conn, name)
    conn.execute(sa.delete(sftp_keys).where(sftp_keys.c.account_id == account_id))
    conn.execute(sa.delete(sftp_account_administrations).where(sftp_account_administrations.c.account_id == account_id))
    conn.execute(sa.update(sftp_uploads).where(sftp_uploads.c.account_id == account_id).values(account_id=None))
    conn.execute(sa.delete(sftp_accounts).where(sftp_accounts.c.id == account_id))


def _touch(conn: Connection, account_id: int, now: datetime) -> None:
    conn.execute(sa.update(sftp_accounts).where(sftp_accounts.c.id == account_id).values(updated_at=now))


def load_account(conn: Connection, name: str) -> Account | None:
    row = conn.execute(sa.select(sftp_accounts).where(sftp_accounts.c.name == name)).first()
    if row is None:
        return None
    codes = conn.execute(
        sa.select(sftp_account_administrations.c.administration)
        .where(sftp_account_administrations.c.account_id == row.id)
        .order_by(sftp_account_administrations.c.administration)
    ).scalars()
    keys = conn.execute(
        sa.select(sftp_keys.c.key_type, sftp_keys.c.key_data, sftp_keys.c.fingerprint)
        .where(sftp_keys.c.account_id == row.id)
        .order_by(sftp_keys.c.id)
    )
    return Account(
        id=row.id,
        name=row.name,
        disabled=bool(row.disabled),
        password_hash=row.password_hash,
        administrations=tuple(codes),
        keys=tuple(StoredKey(k.key_type, k.key_data, k.fingerprint) for k in keys),
    )


def list_accounts(conn: Connection) -> list[dict[str, Any]]:
    out = []
    for name in conn.execute(sa.select(sftp_accounts.c.name).order_by(sftp_accounts.c.name)).scalars():
        account = load_account(conn, name)
        assert account is not None
        keys = conn.execute(
            sa.select(sftp_keys).where(sftp_keys.c.account_id == account.id).order_by(sftp_keys.c.id)
        ).all()
        out.append(
            {
                "name": account.name,
                "administrations": list(account.administrations),
                "disabled": account.disabled,
                "password": account.password_hash is not None,
                "keys": [
                    {"type": k.key_type, "bits": k.bits, "fingerprint": k.fingerprint, "comment": k.comment}
                    for k in keys
                ],
            }
        )
    return out


# -- the upload ledger ---------------------------------------------------------------------------------------


_FORGET = (
    sa.update(sftp_uploads)
    .where(
        sftp_uploads.c.status == "uploaded",
        sftp_uploads.c.administration == sa.bindparam("b_administration"),
        sftp_uploads.c.file_name == sa.bindparam("b_file_name"),
    )
    .values(status="removed", finished_at=sa.bindparam("b_now"))
)


@dataclass(frozen=True)
class Upload:
    """One finished upload, as the ledger writes it."""

    account_id: int
    account_name: str
    administration: str
    file_name: str
    size: int
    sha256: str
    address: str
    uploaded_at: datetime


def record_uploads(conn: Connection, uploads: Sequence[Upload]) -> None:
    """Each upload replaces a pending one of the same name (that one will never be imported); two statements
    for the whole batch. The names in one batch must differ."""
    conn.execute(
        _FORGET,
        [{"b_administration": u.administration, "b_file_name": u.file_name, "b_now": u.uploaded_at} for u in uploads],
    )
    rows = [{**asdict(u), "status": "uploaded"} for u in uploads]
    conn.execute(sa.insert(sftp_uploads), rows)


def rename_upload(conn: Connection, account_id: int, old: tuple[str, str], new: tuple[str, str]) -> None:
    """The account renamed (administration, name) ``old`` to ``new`` before it was taken."""
    conn.execute(
        sa.update(sftp_uploads)
        .where(
            sftp_uploads.c.account_id == account_id,
            sftp_uploads.c.status == "uploaded",
            sftp_uploads.c.administration == old[0],
            sftp_uploads.c.file_name == old[1],
        )
        .values(administration=new[0], file_name=new[1])
    )


def forget_upload(conn: Connection, administration: str, file_name: str, now: datetime) -> None:
    """The file was removed or replaced before it was taken: it will never be imported."""
    conn.execute(_FORGET, {"b_administration": administration, "b_file_name": file_name, "b_now": now})


def pending_bytes(conn: Connection, account_id: int) -> int:
    total = conn.execute(
        sa.select(sa.func.coalesce(sa.func.sum(sftp_uploads.c.size), 0)).where(
            sftp_uploads.c.account_id == account_id, sftp_uploads.c.status == "uploaded"
        )
    ).scalar()
    return int(total or 0)


@dataclass(frozen=True)
class UploadMatch:
    upload_id: int
    account_name: str
    administrations: tuple[str, ...]
    uploaded_at: datetime


def match_upload(
    conn: Connection, administration: str, file_name: str, sha256: str | None, run_id: int, now: datetime
) -> UploadMatch | None:
    """The oldest pending upload of this file (name and content): it became run ``run_id``."""
    query = sa.select(sftp_uploads).where(
        sftp_uploads.c.administration == administration,
        sftp_uploads.c.status == "uploaded",
        sftp_uploads.c.file_name == file_name,
    )
    if sha256 is not None:
        query = query.where(sftp_uploads.c.sha256 == sha256)
    row = conn.execute(query.order_by(sftp_uploads.c.id).limit(1)).first()
    if row is None:
        return None
    conn.execute(
        sa.update(sftp_uploads)
        .where(sftp_uploads.c.id == row.id)
        .values(status="imported", run_id=run_id, finished_at=now)
    )
    codes: tuple[str, ...] = ()
    if row.account_id is not None:
        codes = tuple(
            conn.execute(
                sa.select(sftp_account_administrations.c.administration)
                .where(sftp_account_administrations.c.account_id == row.account_id)
                .order_by(sftp_account_administrations.c.administration)
            ).scalars()
        )
    return UploadMatch(row.id, row.account_name, codes, row.uploaded_at)
