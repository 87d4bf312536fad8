"""The final reminder's law (DOMAIN.md §6): statutory collection costs, the 14-day term, collectable. Pure.

Costs: Besluit vergoeding voor buitengerechtelijke incassokosten (Stb. 2012, 141), on the open principal.
Term: art. 6:96 lid 6 BW; 14 days counted from the day after the debtor received the letter (HR 25-11-2016,
ECLI:NL:HR:2016:2704). Receipt is assumed on the second day after sending, where Sundays, Mondays and public
holidays do not count (the postal rule; the gateway applies it to e-mail too, which only lengthens the term).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import date, timedelta
from decimal import ROUND_HALF_UP, Decimal

# (size of the bracket in euro, rate); the last bracket is unbounded.
COST_BRACKETS: tuple[tuple[Decimal | None, Decimal], ...] = (
    (Decimal(2_500), Decimal("0.15")),
    (Decimal(2_500), Decimal("0.10")),
    (Decimal(5_000), Decimal("0.05")),
    (Decimal(190_000), Decimal("0.01")),
    (None, Decimal("0.005")),
)
COST_MINIMUM = Decimal("40.00")
COST_MAXIMUM = Decimal("6775.00")
TERM_DAYS = 14
CENT = Decimal("0.01")


def collection_costs(principal: Decimal) -> Decimal:
    """The statutory collection costs on ``principal`` (euro), rounded to the cent; 0 for nothing owed."""
    if principal <= 0:
        return Decimal("0.00")
    costs = Decimal(0)
    rest = principal
    for size, rate in COST_BRACKETS:
        part = rest if size is None else min(rest, size)
        costs += part * rate
        rest -= part
        if rest <= 0:
            break
    return min(max(costs, COST_MINIMUM), COST_MAXIMUM).quantize(CENT, ROUND_HALF_UP)


def assumed_receipt(sent_on: date, is_holiday: Callable[[date], bool]) -> date:
    """The second day after ``sent_on`` that is not a Sunday, a Monday or a public holiday."""
    day, counted = sent_on, 0
    while counted < 2:
        day += timedelta(days=1)
        if day.weekday() not in (6, 0) and not is_holiday(day):
            counted += 1
    return day


def payment_deadline(sent_on: date, is_holiday: Callable[[date], bool]) -> date:
    """The last day of the 14-day term: 14 days counted from the day after the assumed receipt."""
    return assumed_receipt(sent_on, is_holiday) + timedelta(days=TERM_DAYS)


def decide_collectable(
    status: str, final_deadline: date | None, today: date, open_credit_notes: Sequence[str]
) -> tuple[bool, str | None]:
    """(collectable, why not): after the final reminder's deadline has passed unpaid, the invoice is ready for a
    collection case, unless the debtor has an open credit note (DOMAIN.md §6), which prevents automatic
    collection until someone settles the two. ``final_deadline``: the stored deadline of the *sent* final
    reminder, None when none was sent; ``open_credit_notes``: the numbers of the debtor's open credit notes."""
    if status != "open":
        return False, None
    if final_deadline is None:
        return False, "no final reminder sent"
    if today <= final_deadline:
        return False, f"the final reminder's term runs until {final_deadline.isoformat()}"
    if open_credit_notes:
        shown = sorted(open_credit_notes)
        listed = ", ".join(shown[:3]) + (f" and {len(shown) - 3} more" if len(shown) > 3 else "")
        return False, f"open credit note{'s' if len(shown) > 1 else ''} {listed}"
    return True, None
