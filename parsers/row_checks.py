"""Row checks shared by the open-items parsers: the spec-driven validation of one record's values.

payt-csv and payt-xml both turn a record's raw texts (cells, or element texts) into canonical values with
the same checks, so a value gets the same problem code and message whatever the format: ``CellsCheck``
applies the column spec (trim, empty -> default or "can't be blank", typed conversion, length limit) to a
tuple of raw texts in column order. ``column`` in a ``Finding`` is the payt-csv column name; the XML parser
translates it to an element path.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Sequence
from datetime import date
from decimal import Decimal
from operator import itemgetter
from typing import Any, NamedTuple, Protocol

from gateway.records import Problem, Severity, notice
from parsers.column_spec import ColumnSpec, OneOf
from parsers.csv_values import (
    InvalidValue,
    is_plausible_phone,
    is_plausible_vat_number,
    is_valid_iban,
    normalise_iban,
    parse_amount,
    parse_bool,
    parse_country,
    parse_currency,
    parse_date,
    parse_date_or_datetime,
    parse_email,
    parse_language,
)

MAX_PROBLEMS_PER_CODE = 1000  # further problems of one code are counted, not listed


def truncation_notices(counts: dict[str, int]) -> list[Problem]:
    """One notice per problem code that occurred more often than is listed."""
    return [
        notice(
            "problems_truncated",
            f"{n - MAX_PROBLEMS_PER_CODE} more {code!r} problems are not listed ({n} in total)",
        )
        for code, n in counts.items()
        if n > MAX_PROBLEMS_PER_CODE
    ]


VALUE_CACHE_SIZE = 8192  # parsed values kept, keyed by their raw text


class ValueDefaults(Protocol):
    """What the checks need of a parser's options (``default_from`` in the spec names these attributes)."""

    @property
    def default_currency(self) -> str: ...

    @property
    def default_country(self) -> str | None: ...

    @property
    def date_order(self) -> str: ...


class Finding(NamedTuple):
    severity: Severity
    code: str
    message: str
    column: str | None


Checked = tuple[Any, Finding | None]


def shown(value: str) -> str:
    return repr(value if len(value) <= 40 else value[:37] + "...")


FEW_VALUES = frozenset({"bool", "country", "currency"})  # types with few distinct values: memoized


def memoized(convert: Callable[[str], Checked]) -> Callable[[str], Checked]:
    memo: dict[str, Checked] = {}

    def cached(value: str) -> Checked:
        result = memo.get(value)
        if result is None:
            result = convert(value)
            if len(memo) >= VALUE_CACHE_SIZE:
                memo.clear()
            memo[value] = result
        return result

    return cached


def converter(col: ColumnSpec, options: ValueDefaults) -> Callable[[str], Checked] | None:
    """The check of a non-empty, trimmed cell of ``col``'s type; None for plain text."""
    kind = col.type
    if kind == "text":
        return None
    order = options.date_order
    error_parsers: dict[str, Callable[[str], Any]] = {
        "decimal": parse_amount,
        "date": lambda v: parse_date(v, order),
        "date_or_datetime": lambda v: parse_date_or_datetime(v, order),
        "currency": parse_currency,
        "country": parse_country,
        "email": parse_email,
        "bool": parse_bool,
    }
    if kind in error_parsers:
        parse = error_parsers[kind]

        def convert(value: str) -> Checked:
            try:
                return parse(value), None
            except InvalidValue as exc:
                return None, Finding(Severity.ERROR, exc.code, f"{col.label} {shown(value)} {exc.reason}", col.name)

        return memoized(convert) if kind in FEW_VALUES else convert
    if kind == "language":

        def language(value: str) -> Checked:
            try:
                return parse_language(value), None
            except InvalidValue as exc:
                message = f"{col.label} {shown(value)} {exc.reason}; it is left empty"
                return None, Finding(Severity.WARNING, exc.code, message, col.name)

        return memoized(language)
    warning_checks: dict[str, tuple[Callable[[str], bool], str, str]] = {
        "iban": (is_valid_iban, "invalid_iban", "is not a valid IBAN"),
        "vat_number": (is_plausible_vat_number, "invalid_vat_number", "is not a valid VAT number (NL123456789B01)"),
        "phone": (is_plausible_phone, "suspicious_phone", "does not look like a phone number"),
    }
    check, code, reason = warning_checks[kind]  # the spec loader admits only known types
    normal: Callable[[str], str] = normalise_iban if kind == "iban" else str.strip

    def plausible(value: str) -> Checked:
        if check(value):
            return normal(value), None
        return value, Finding(Severity.WARNING, code, f"{col.label} {shown(value)} {reason}", col.name)

    return plausible


class ColumnCheck(NamedTuple):
    col: ColumnSpec
    empty: Checked  # the result for an empty cell (a default, nothing, or "can't be blank")
    too_long: Finding
    convert: Callable[[str], Checked] | None


class CellsCheck:
    """The checks of a fixed list of columns, applied to a tuple of raw cells -> (values, findings)."""

    def __init__(self, columns: tuple[ColumnSpec, ...], options: ValueDefaults, groups: Iterable[OneOf]):
        self.one_of = one_of_checks(groups, columns)
        self.checks: list[ColumnCheck] = []
        for col in columns:
            default = getattr(options, col.default_from) if col.default_from else None
            blank = Finding(Severity.ERROR, "required", f"{col.label} can't be blank", col.name)
            empty: Checked = (default, blank if default is None and col.required else None)
            message = f"{col.label} is longer than {col.max_length} characters"
            long = Finding(Severity.ERROR, "too_long", message, col.name)
            self.checks.append(ColumnCheck(col, empty, long, converter(col, options)))
        self.shortest_limit = min((c.col.max_length for c in self.checks), default=0)
        # No cell is over the limit when neither half of the cells adds up to more (two C-level sums are
        # much cheaper than max(), which compares every length).
        half = len(self.checks) // 2
        self.halves = (cells_getter(range(half)), cells_getter(range(half, len(self.checks)))) if half else None
        self.special_empty = [(i, c.empty) for i, c in enumerate(self.checks) if c.empty != (None, None)]
        self.typed = [(i, c.convert) for i, c in enumerate(self.checks) if c.convert is not None]

    def __call__(self, cells: tuple[str, ...]) -> tuple[list[Any], list[Finding]]:
        """Trim, empty -> None/default/"can't be blank", then the typed checks; in column order."""
        limit = self.shortest_limit
        halves = self.halves
        if (
            halves is None or sum(map(len, halves[0](cells))) > limit or sum(map(len, halves[1](cells))) > limit
        ) and max(map(len, cells), default=0) > limit:
            return self.one_by_one(cells)
        values: list[Any] = [v.strip() or None for v in cells]
        found: list[tuple[int, Finding]] = []
        for i, (default, finding) in self.special_empty:
            if values[i] is None:
                values[i] = default
                if finding is not None:
                    found.append((i, finding))
        for i, convert in self.typed:
            value = values[i]
            if value is not None:
                values[i], finding = convert(value)
                if finding is not None:
                    found.append((i, finding))
        for positions, finding in self.one_of:
            if all(values[p] is None for p in positions):
                found.append((positions[0], finding))
        if len(found) > 1:
            found.sort(key=itemgetter(0))
        return values, [f for _, f in found]

    def one_by_one(self, cells: tuple[str, ...]) -> tuple[list[Any], list[Finding]]:
        """The same, a column at a time, with the length limits (taken only when a cell is long)."""
        values: list[Any] = []
        found: list[Finding] = []
        for check, raw in zip(self.checks, cells, strict=True):
            value: Any = raw.strip()
            finding: Finding | None
            if not value:
                value, finding = check.empty
            elif len(value) > check.col.max_length:
                value, finding = None, check.too_long
            elif check.convert is None:
                finding = None
            else:
                value, finding = check.convert(value)
            values.append(value)
            if finding is not None:
                found.append(finding)
        for positions, finding in self.one_of:
            if not any(cells[p].strip() for p in positions):
                found.append(finding)
        return values, found


def one_of_checks(groups: Iterable[OneOf], columns: tuple[ColumnSpec, ...]) -> list[tuple[list[int], Finding]]:
    """The required_one_of groups that lie inside ``columns``, as cell positions and the finding."""
    names = [c.name for c in columns]
    return [
        ([names.index(c) for c in g.columns], Finding(Severity.ERROR, "required", g.message, g.columns[0]))
        for g in groups
        if all(c in names for c in g.columns)
    ]


def cells_getter(positions: Iterable[int]) -> Callable[[Sequence[str]], tuple[str, ...]]:
    """A C-level getter of the cells at ``positions``, always returning a tuple."""
    wanted = tuple(positions)
    if len(wanted) == 1:
        only = wanted[0]
        return lambda row: (row[only],)
    return itemgetter(*wanted)


def field_order(cls: Any, names: Sequence[str]) -> list[int] | None:
    """For values in the order of ``names``: where each of the dataclass ``cls``'s fields is among them (-1:
    not there), so that ``cls(*in_field_order(values, order))`` replaces ``cls(**dict(zip(names, values)))``,
    which is much slower; None when the orders are the same."""
    order = [names.index(f.name) if f.name in names else -1 for f in dataclasses.fields(cls)]
    return None if order == list(range(len(order))) else order


def in_field_order(values: list[Any], order: list[int] | None) -> list[Any]:
    return values if order is None else [values[i] if i >= 0 else None for i in order]


def open_fits(open_: Decimal, total: Decimal) -> bool:
    return 0 <= open_ <= total or total <= open_ <= 0


def open_warning(open_: Decimal, total: Decimal) -> Finding:
    return Finding(
        Severity.WARNING,
        "open_exceeds_total",
        f"Open amount {open_} is more than the total amount {total}, or of the other sign",
        "invoice_open_amount_inc_vat",
    )


def invoice_rules(fields: dict[str, Any]) -> list[Finding]:
    """The rules across an invoice's checked values: due date on or after the invoice date (an error), the
    open amount within the total and of its sign (a warning)."""
    found: list[Finding] = []
    invoice_date, due_date = fields.get("invoice_date"), fields.get("due_date")
    if isinstance(invoice_date, date) and isinstance(due_date, date) and due_date < invoice_date:
        found.append(
            Finding(Severity.ERROR, "due_before_invoice_date", "Due date before invoice date", "invoice_due_date")
        )
    total, open_ = fields.get("amount_total"), fields.get("amount_open")
    if isinstance(total, Decimal) and isinstance(open_, Decimal) and not open_fits(open_, total):
        found.append(open_warning(open_, total))
    return found
