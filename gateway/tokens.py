"""OAuth tokens of API connectors, in the database, encrypted with the gateway-wide ``SECRET_KEY``.

Encryption: Fernet (AES-128-CBC + HMAC-SHA256) under a key derived from ``SECRET_KEY`` with HKDF-SHA256.
The plaintext names its administration and vendor, so a row copied to another administration does not
decrypt into a usable token there. ``update`` is the only writer: it holds a write lock on the
administration (SQLite: ``BEGIN IMMEDIATE``; PostgreSQL: ``SELECT … FOR UPDATE``) while the connector
refreshes, and commits the new pair before the connector uses it (SPEC.md §6.1).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from sqlalchemy.engine import Connection, Engine

from connectors.base import AuthorizationError, Clock, TokenChange, TokenSet
from gateway.secrets import describe_secret, read_secret
from gateway.store import ensure_administration, transaction
from gateway.tables import UTCDateTime, administrations, metadata

SECRET_KEY = "SECRET_KEY"
MIN_KEY_LENGTH = 16

connector_tokens = sa.Table(
    "connector_tokens",
    metadata,
    sa.Column("administration_id", sa.ForeignKey("administrations.id"), primary_key=True),
    sa.Column("vendor", sa.String(32), nullable=False),
    sa.Column("ciphertext", sa.Text, nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("updated_at", UTCDateTime, nullable=False),
)


def make_cipher(secret_key: str) -> Fernet:
    if len(secret_key) < MIN_KEY_LENGTH:
        raise AuthorizationError(f"SECRET_KEY is too short: use at least {MIN_KEY_LENGTH} random characters")
    hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"payt-gateway connector tokens v1")
    return Fernet(base64.urlsafe_b64encode(hkdf.derive(secret_key.encode("utf-8"))))


def gateway_cipher() -> Fernet:
    key = read_secret(SECRET_KEY)
    if not key:
        raise AuthorizationError(
            f"the gateway-wide secret SECRET_KEY (which encrypts connector tokens) is missing: "
            f"{describe_secret(SECRET_KEY)}"
        )
    return make_cipher(key)


class DbTokenStore:
    """The ``connectors.base.TokenStore`` of one administration over the gateway database."""

    def __init__(
        self,
        engine: Engine,
        administration: str,
        name: str,
        vendor: str,
        clock: Clock,
        cipher: Callable[[], Fernet] = gateway_cipher,
    ):
        self.engine = engine
        self.administration = administration
        self.name = name
        self.vendor = vendor
        self.clock = clock
        self._make_cipher = cipher
        self._cipher: Fernet | None = None

    @property
    def cipher(self) -> Fernet:
        """Made on first use: a connector with a fixed token (Moneybird's personal token) needs no key."""
        if self._cipher is None:
            self._cipher = self._make_cipher()
        return self._cipher

    def load(self) -> TokenSet | None:
        with transaction(self.engine, write=False) as conn:
            row = conn.execute(self._select()).first()
        return None if row is None else self._decrypt(row)

    def update(self, change: TokenChange) -> TokenSet | None:
        with transaction(self.engine) as conn:
            admin_id = self._lock(conn)
            row = conn.execute(self._select()).first()
            current = None if row is None else self._decrypt(row)
            new = change(current)
            if new is None or new == current:
                return current
            values: dict[str, Any] = {
                "vendor": self.vendor,
                "ciphertext": self._encrypt(new),
                "updated_at": self.clock.now(),
            }
            if row is None:
                conn.execute(connector_tokens.insert().values(administration_id=admin_id, version=1, **values))
            else:
                conn.execute(
                    connector_tokens.update()
                    .where(connector_tokens.c.administration_id == admin_id)
                    .values(version=row.version + 1, **values)
                )
        return new

    def delete(self) -> None:
        with transaction(self.engine) as conn:
            admin_id = self._lock(conn)
            conn.execute(connector_tokens.delete().where(connector_tokens.c.administration_id == admin_id))

    # -- helpers ------------------------------------------------------------------------------------------

    def _lock(self, conn: Connection) -> int:
        """Serialise token writers of this administration until the transaction ends."""
        admin_id = ensure_administration(conn, self.administration, self.name, self.clock.now())
        conn.execute(sa.select(administrations.c.id).where(administrations.c.id == admin_id).with_for_update())
        return admin_id

    def _select(self) -> sa.Select[Any]:
        return (
            sa.select(connector_tokens.c.ciphertext, connector_tokens.c.version, connector_tokens.c.vendor)
            .join(administrations, administrations.c.id == connector_tokens.c.administration_id)
            .where(administrations.c.code == self.administration)
        )

    def _encrypt(self, tokens: TokenSet) -> str:
        plain = json.dumps({"administration": self.administration, "vendor": self.vendor, "tokens": tokens.to_json()})
        return self.cipher.encrypt(plain.encode("utf-8")).decode("ascii")

    def _decrypt(self, row: Any) -> TokenSet:
        try:
            plain = json.loads(self.cipher.decrypt(row.ciphertext.encode("ascii")))
        except (InvalidToken, ValueError) as exc:
            raise AuthorizationError(
                "the stored connector tokens cannot be decrypted with this SECRET_KEY (was it changed?); "
                "run `payt-gateway connect` again"
            ) from exc
        if plain.get("administration") != self.administration or plain.get("vendor") != self.vendor:
            raise AuthorizationError(
                f"the stored tokens belong to {plain.get('administration')}/{plain.get('vendor')}, not "
                f"{self.administration}/{self.vendor}; run `payt-gateway connect` again"
            )
        return TokenSet.from_json(plain["tokens"])


def token_updated_at(conn: Connection, administration: str) -> datetime | None:
    """When this administration's tokens were last written (for `connect` and status output)."""
    return conn.execute(
        sa.select(connector_tokens.c.updated_at)
        .join(administrations, administrations.c.id == connector_tokens.c.administration_id)
        .where(administrations.c.code == administration)
    ).scalar()
