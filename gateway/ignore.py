"""Ignore lists (DOMAIN.md §2): exact values, numeric ranges ``(1..7)`` and prefixes ``ABC*``. Pure."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from gateway.config import IgnoreSettings

_RANGE = re.compile(r"^\(\s*(-?\d+)\s*\.\.\s*(-?\d+)\s*\)$")
_INTEGER = re.compile(r"^-?\d+$")


@dataclass(frozen=True)
class IgnoreRules:
    """Compiled ignore rules of one administration."""

    exact: frozenset[str]
    prefixes: tuple[str, ...]
    ranges: tuple[tuple[int, int], ...]

    def matches(self, value: str | None) -> bool:
        if value is None:
            return False
        if value in self.exact:
            return True
        if self.prefixes and value.startswith(self.prefixes):
            return True
        if self.ranges and _INTEGER.match(value):
            number = int(value)
            return any(low <= number <= high for low, high in self.ranges)
        return False


def compile_rules(entries: Sequence[str]) -> IgnoreRules:
    exact: set[str] = set()
    prefixes: list[str] = []
    ranges: list[tuple[int, int]] = []
    for entry in entries:
        found = _RANGE.match(entry)
        if found:
            low, high = sorted((int(found.group(1)), int(found.group(2))))
            ranges.append((low, high))
        elif entry.endswith("*"):
            prefixes.append(entry[:-1])
        else:
            exact.add(entry)
    return IgnoreRules(frozenset(exact), tuple(prefixes), tuple(ranges))


@dataclass(frozen=True)
class IgnoreLists:
    invoices: IgnoreRules
    debtors: IgnoreRules
    payment_conditions: IgnoreRules

    @classmethod
    def from_settings(cls, settings: IgnoreSettings) -> IgnoreLists:
        return cls(
            compile_rules(settings.invoices),
            compile_rules(settings.debtors),
            compile_rules(settings.payment_conditions),
        )

    @property
    def empty(self) -> bool:
        return not any(
            r.exact or r.prefixes or r.ranges for r in (self.invoices, self.debtors, self.payment_conditions)
        )

    def is_ignored(self, invoice_number: str, debtor_code: str, payment_condition: str | None) -> bool:
        return (
            self.invoices.matches(invoice_number)
            or self.debtors.matches(debtor_code)
            or self.payment_conditions.matches(payment_condition)
        )
