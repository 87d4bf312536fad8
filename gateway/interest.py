"""Statutory interest on a late payment (DOMAIN.md §6). Pure; the rates come from the configuration.

The Netherlands has two statutory rates, both set every half year (1 January and 1 July) and therefore kept
as dated configuration (``[[interest.statutory]]``), never in code:
- *wettelijke rente* (art. 6:119 BW) for consumers (non-commercial transactions),
- *wettelijke handelsrente* (art. 6:119a BW) for companies (commercial transactions).

How it is computed:
- Interest runs over the days after the due date up to and including the given day: the debtor is in default
  from the day after the due date (a fixed term expires unused, art. 6:83 sub a BW). A day's interest is the
  yearly rate in force on that day, on 365 days a year (also in leap years) [D].
- Each whole year after the due date the interest of that year is added to the amount the interest is computed
  on (art. 6:119 lid 2 BW; art. 6:119a lid 3 BW for the commercial rate): simple interest within a year, rate
  period by rate period, compounded yearly. A year's interest is rounded to the cent when it is added [D].
- The amount is the invoice's current open amount [D]: earlier partial payments are not modelled.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import ROUND_HALF_UP, Decimal

CENT = Decimal("0.01")
DAYS_A_YEAR = 365
KINDS = ("consumer", "commercial")


@dataclass(frozen=True)
class RatePeriod:
    """The statutory rates (percent a year) in force from ``start`` until the next period's start."""

    start: date
    consumer: Decimal
    commercial: Decimal

    def rate(self, kind: str) -> Decimal:
        return self.commercial if kind == "commercial" else self.consumer


class NoRate(ValueError):
    """The configured periods do not cover a day on which interest runs."""


def add_years(day: date, years: int) -> date:
    """``day`` plus whole years; 29 February becomes 28 February in a year without one."""
    try:
        return day.replace(year=day.year + years)
    except ValueError:
        return day.replace(year=day.year + years, day=28)


def _rate_days(first: date, last: date, periods: Sequence[RatePeriod], kind: str) -> Decimal:
    """The sum over the days ``first``..``last`` (inclusive) of the rate in force, in percent-days."""
    if periods[0].start > first:
        raise NoRate(f"no statutory interest rate configured for {first} (the first period starts {periods[0].start})")
    total = Decimal(0)
    for index, period in enumerate(periods):
        end = periods[index + 1].start - timedelta(days=1) if index + 1 < len(periods) else last
        lo, hi = max(first, period.start), min(last, end)
        if lo <= hi:
            total += period.rate(kind) * ((hi - lo).days + 1)
    return total


def statutory_interest(
    principal: Decimal, due: date, as_of: date, periods: Sequence[RatePeriod], kind: str = "consumer"
) -> Decimal:
    """The statutory interest owed on ``principal`` (euro) for the days after ``due`` up to ``as_of``, at the
    ``kind`` rate (consumer or commercial) of ``periods`` (ascending by start), compounded yearly.

    Raises ``NoRate`` when a day of interest lies before the first period. Nothing is owed on a non-positive
    amount or before the day after the due date."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(KINDS)}")
    if principal <= 0 or as_of <= due:
        return Decimal("0.00")
    if not periods:
        raise NoRate("no statutory interest rates configured")
    base, owed, year = principal, Decimal(0), 0
    while True:
        first = add_years(due, year) + timedelta(days=1)
        if first > as_of:
            break
        last = min(add_years(due, year + 1), as_of)
        interest = (base * _rate_days(first, last, periods, kind) / (100 * DAYS_A_YEAR)).quantize(CENT, ROUND_HALF_UP)
        owed += interest
        base += interest  # compounded once the year is over; the last (partial) year is not added again
        year += 1
    return owed.quantize(CENT)


def interest_kind(is_company: bool | None) -> str:
    """Companies owe the commercial rate; a debtor not known as a company counts as a consumer (the lower rate,
    the claim that is safe to make)."""
    return "commercial" if is_company is True else "consumer"
