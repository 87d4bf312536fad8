"""The few errors of our own that adapters translate their libraries' errors into (DESIGN.md rule 7)."""

from __future__ import annotations

from collections.abc import Sequence

from gateway.records import Problem


class GatewayError(Exception):
    """Base of the gateway's own errors."""


class RejectFile(GatewayError):
    """A permanent problem with a delivery: the whole file is rejected, nothing is imported."""

    def __init__(self, problems: Sequence[Problem]):
        self.problems = list(problems)
        super().__init__("; ".join(p.message for p in self.problems) or "file rejected")


class TransientError(GatewayError):
    """A failure that may pass (database away, disk full, vendor outage): try again later."""


class ConfigError(GatewayError):
    """The configuration is invalid. The daemon exits with status 78 (EX_CONFIG)."""

    def __init__(self, problems: Sequence[str]):
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


EX_CONFIG = 78
