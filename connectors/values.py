"""Value conversions every vendor mapping needs: trimmed text, exact money, vendor dates (SPEC.md §5)."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any

CENT = Decimal("0.01")
_MS_DATE = re.compile(r"^/Date\((-?\d+)([+-]\d{4})?\)/$")


def text(value: Any) -> str | None:
    """Trimmed text; empty (or padding only) is None."""
    if value is None:
        return None
    out = str(value).strip()
    return out or None


def money(value: Any) -> Decimal:
    """An amount from a vendor string or JSON number, to cents (ROUND_HALF_UP). Never through float math:
    a JSON double is converted through its shortest repr (``Decimal(str(x))``)."""
    if value is None or isinstance(value, bool):
        raise ValueError(f"not an amount: {value!r}")
    try:
        amount = Decimal(str(value).strip())
    except InvalidOperation as exc:
        raise ValueError(f"not an amount: {value!r}") from exc
    if not amount.is_finite():
        raise ValueError(f"not an amount: {value!r}")
    return amount.quantize(CENT, rounding=ROUND_HALF_UP)


def iso_date(value: Any) -> date:
    """``YYYY-MM-DD`` (Moneybird, e-Boekhouden REST) or an ISO date-time (its date part)."""
    if not isinstance(value, str) or len(value) < 10:
        raise ValueError(f"not a date: {value!r}")
    return date.fromisoformat(value[:10])


def ms_date(value: Any) -> date:
    """Exact's ``/Date(1712707200000)/`` (UTC epoch milliseconds, optional ``+hhmm``): the calendar date."""
    match = _MS_DATE.match(value.strip()) if isinstance(value, str) else None
    if match is None:
        raise ValueError(f"not an OData date: {value!r}")
    return datetime.fromtimestamp(int(match.group(1)) / 1000, tz=UTC).date()


def compact_date(value: Any) -> date:
    """Twinfield's ``YYYYMMDD``."""
    if not isinstance(value, str) or not re.fullmatch(r"\d{8}", value.strip()):
        raise ValueError(f"not a YYYYMMDD date: {value!r}")
    v = value.strip()
    return date(int(v[:4]), int(v[4:6]), int(v[6:]))


def upper(value: Any) -> str | None:
    out = text(value)
    return out.upper() if out else None


def lower(value: Any) -> str | None:
    out = text(value)
    return out.lower() if out else None
