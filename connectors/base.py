"""What every connector shares: its errors, tokens, the ports it is given, and the vendor descriptor.

Connectors import only ``gateway.records`` and their libraries (httpx). The gateway hands each connector a
``ConnectorContext``: validated settings, a secret reader, a token store (implemented by the gateway over
its database, encrypted) and a clock. A connector returns a complete ``Snapshot`` or raises a
``ConnectorError``; it never returns part of the open items.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any, BinaryIO, Protocol

from gateway.records import Snapshot

# -- errors ------------------------------------------------------------------------------------------------


class ConnectorError(Exception):
    """A poll or an authorisation failed; ``str(exc)`` is the reason an operator reads in ``imports``."""


class TransientVendorError(ConnectorError):
    """Timeouts, 5xx, rate limits that outlast the wait budget: the next scheduled attempt may succeed."""


class PermanentVendorError(ConnectorError):
    """The vendor refuses the request (403, 404, a bad filter, an error document): retrying will not help."""


class AuthorizationError(PermanentVendorError):
    """No usable authorisation (401 after a refresh, a revoked refresh token, a missing secret)."""


# -- ports -------------------------------------------------------------------------------------------------


class Clock(Protocol):
    def now(self) -> datetime: ...

    def sleep(self, seconds: float) -> None: ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


@dataclass(frozen=True)
class TokenSet:
    """OAuth tokens of one administration. ``obtained_at`` is when the token endpoint answered."""

    access_token: str
    refresh_token: str | None
    obtained_at: datetime
    expires_at: datetime | None = None
    extra: Mapping[str, str] = field(default_factory=dict)

    def to_json(self) -> str:
        data = asdict(self)
        data["obtained_at"] = self.obtained_at.isoformat()
        data["expires_at"] = self.expires_at.isoformat() if self.expires_at else None
        data["extra"] = dict(self.extra)
        return json.dumps(data, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> TokenSet:
        data = json.loads(text)
        return cls(
            access_token=data["access_token"],
            refresh_token=data["refresh_token"],
            obtained_at=datetime.fromisoformat(data["obtained_at"]),
            expires_at=datetime.fromisoformat(data["expires_at"]) if data["expires_at"] else None,
            extra=dict(data.get("extra") or {}),
        )


TokenChange = Callable[[TokenSet | None], TokenSet | None]


class TokenStore(Protocol):
    """Where an administration's OAuth tokens live (the gateway: encrypted in its database)."""

    def load(self) -> TokenSet | None: ...

    def update(self, change: TokenChange) -> TokenSet | None:
        """Run ``change`` on the stored tokens while holding an exclusive lock (other workers wait), and
        persist and commit what it returns **before** returning it; ``None`` from ``change`` keeps the
        stored tokens. If ``change`` raises, nothing is written. Returns the tokens now stored."""
        ...


SecretReader = Callable[[str], str | None]


@dataclass(frozen=True)
class ConnectorContext:
    administration: str
    settings: Mapping[str, Any]
    secret: SecretReader
    tokens: TokenStore
    clock: Clock
    secret_help: Callable[[str], str] = lambda name: f"provide the secret {name}"


# -- the connector and its vendor --------------------------------------------------------------------------


class Connector(Protocol):
    def fetch_snapshot(self) -> Snapshot:
        """All open items of the administration, completely fetched, or a ``ConnectorError``."""
        ...

    def authorization_url(self, redirect_uri: str, state: str) -> str | None:
        """The URL a person opens to authorise the gateway; None when the vendor uses fixed credentials."""
        ...

    def complete_authorization(self, code: str, redirect_uri: str) -> None:
        """Exchange the code from the redirect for tokens and store them."""
        ...

    def check(self) -> str:
        """Reach the vendor with the stored credentials; a short description of what was reached."""
        ...

    def fetch_pdf(self, url: str, sink: BinaryIO) -> None:
        """Download the PDF an ``Invoice.pdf_url`` of this connector names into ``sink`` (at most
        ``MAX_PDF_BYTES``), or raise a ``ConnectorError``. What arrives is not checked here: the gateway
        checks it like any delivered PDF."""
        ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class Setting:
    """One key of an administration's ``connector`` table. ``kind``: text, url, integer (positive), count
    (zero or more) or number."""

    name: str
    kind: str = "text"
    required: bool = False
    default: Any = None


COMMON_SETTINGS: tuple[Setting, ...] = (
    Setting("timeout_seconds", "number", default=30.0),
    Setting("max_attempts", "integer", default=6),
    Setting("max_wait_seconds", "number", default=600.0),
    # after each applied poll: PDFs downloaded at most, for open invoices without one (0: none)
    Setting("documents_per_poll", "count", default=25),
)
MAX_PDF_BYTES = 50 * 1024 * 1024  # a larger answer to a PDF download is refused, not stored


@dataclass(frozen=True)
class Vendor:
    """A vendor module's descriptor: its ``source`` name, settings, secrets, and how to build it.

    ``secrets(settings)`` names the secrets (CONTRACT.md: read from ``$CREDENTIALS_DIRECTORY/CODE_NAME`` or
    ``PAYT_GATEWAY_CODE_NAME``) this configuration needs.
    """

    source: str
    title: str
    settings: tuple[Setting, ...]
    secrets: Callable[[Mapping[str, Any]], tuple[str, ...]]
    build: Callable[[ConnectorContext], Connector]

    @property
    def all_settings(self) -> tuple[Setting, ...]:
        return (*self.settings, *COMMON_SETTINGS)


def require_secret(ctx: ConnectorContext, name: str) -> str:
    value = ctx.secret(name)
    if not value:
        raise AuthorizationError(f"the secret {name} is missing: {ctx.secret_help(name)}")
    return value
