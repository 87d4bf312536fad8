"""Validation of an administration's ``connector`` table against its vendor's settings (CONTRACT.md).

Unknown keys are errors, required keys must be there, every value has its kind; defaults are filled in so
that a connector reads a complete mapping. Secret-looking keys were already refused by ``gateway.config``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from connectors.base import Setting


def _problem(setting: Setting, value: Any) -> str | None:
    if setting.kind == "integer":
        ok = isinstance(value, int) and not isinstance(value, bool) and value > 0
        return None if ok else "must be a positive whole number"
    if setting.kind == "count":
        ok = isinstance(value, int) and not isinstance(value, bool) and value >= 0
        return None if ok else "must be a whole number, 0 or more"
    if setting.kind == "number":
        ok = isinstance(value, int | float) and not isinstance(value, bool) and value > 0
        return None if ok else "must be a positive number"
    if not isinstance(value, str) or not value.strip():
        return "must be a non-empty string"
    if setting.kind == "url":
        parts = urlsplit(value)
        if parts.scheme not in ("https", "http") or not parts.netloc:
            return "must be an http(s) URL"
    return None


def validate_connector(source: str, table: Mapping[str, Any], prefix: str, problems: list[str]) -> dict[str, Any]:
    """The connector settings with defaults filled in; problems appended as ``key: message``."""
    if source == "file":
        for name in table:
            problems.append(f"{prefix}.{name}: a file source has no connector settings")
        return {}
    # Imported here, not at the top: the vendors bring an HTTP client, which a process that only unpickles
    # an administration (the parse worker) does not need (~14 MB and ~0.1 s of its start-up).
    from connectors.registry import VENDORS

    vendor = VENDORS.get(source)
    if vendor is None:
        problems.append(f"{prefix}: the {source} connector is not available in this version")
        return dict(table)
    known = {s.name: s for s in vendor.all_settings}
    out: dict[str, Any] = {}
    for name, value in table.items():
        setting = known.get(name)
        if setting is None:
            problems.append(f"{prefix}.{name}: unknown key for {vendor.title} (known: {', '.join(sorted(known))})")
            continue
        message = _problem(setting, value)
        if message:
            problems.append(f"{prefix}.{name}: {message} (got {value!r})")
            continue
        out[name] = value
    for setting in vendor.all_settings:
        if setting.name in out:
            continue
        if setting.required:
            problems.append(f"{prefix}.{setting.name}: required for {vendor.title}")
        out[setting.name] = setting.default
    return out
