"""Pure decisions of a configuration reload (SIGHUP): what cannot change live, and what did change.

``data_dir``, ``database_url`` and the HTTP endpoint need a restart: the reload keeps the running values and
says so (``reload_needs_restart``); everything else is applied by the worker between files.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from gateway.config import Config

RESTART_ONLY = ("data_dir", "database_url", "http")
GATEWAY_KEYS = ("timezone", "settle_seconds", "sweep_seconds", "stall_seconds")


def restart_only_changes(old: Config, new: Config) -> list[str]:
    return [name for name in RESTART_ONLY if getattr(old, name) != getattr(new, name)]


def live_config(old: Config, new: Config) -> Config:
    """``new`` with the restart-only settings of ``old``."""
    return replace(new, **{name: getattr(old, name) for name in RESTART_ONLY})


def describe_changes(old: Config, new: Config) -> dict[str, Any]:
    """What a reload changes, for the ``config_reloaded`` log line."""
    before, after = old.administrations, new.administrations
    return {
        "added": sorted(set(after) - set(before)),
        "removed": sorted(set(before) - set(after)),
        "changed": sorted(code for code in set(before) & set(after) if before[code] != after[code]),
        "sftp_changed": old.sftp != new.sftp,
        "retention_changed": old.retention != new.retention,
        "gateway_changed": [name for name in GATEWAY_KEYS if getattr(old, name) != getattr(new, name)],
    }
