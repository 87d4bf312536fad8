"""The frames between the payt-xml worker process and the parser, over a real pipe."""

from __future__ import annotations

import os
import threading
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal

import pytest

from gateway.records import Debtor, Entry, Invoice, Severity, error, notice
from parsers.payt_xml_wire import FRAME_ITEMS, FrameReader, Outcome, read_entries, write_entries, write_outcome


def entries(n: int) -> list[Entry]:
    debtors = [Debtor("D1", company_name="Een B.V.", is_company=True), Debtor("D2", lastname="Twee", iban="NL91")]
    sent: list[date | datetime | None] = [None, date(2026, 1, 2), datetime(2026, 1, 2, 8, 30, 0, 250000)]
    sent.append(datetime(2026, 1, 2, 8, 30, tzinfo=timezone(timedelta(hours=-5))))
    return [
        Entry(
            10 + i,
            debtors[i * 2 // n],
            Invoice(
                f"N{i}",
                debtors[i * 2 // n].code,
                date(2026, 1, 1) + timedelta(days=i % 40),
                date(2026, 3, 1),
                Decimal("-12.50") if i % 3 else Decimal("1210"),
                Decimal("-0.5") if i % 3 else Decimal("0.00"),
                "EUR",
                f"omschrijving {i}" if i % 2 else None,
                None,
                "1234567890123456",
                None,
                sent[i % 4],
                f"N{i}.pdf" if i % 5 == 0 else None,
            ),
        )
        for i in range(n)
    ]


def test_entries_and_the_outcome_come_through_unchanged() -> None:
    sent = entries(FRAME_ITEMS * 2 + 7)  # more than one frame
    outcome = Outcome(
        rows=len(sent) + 1,
        problems=[notice("debtor_without_invoices", "debtor 9 has no invoices", 40, "/OpenItems/Debtor[3]")],
        blocked_invoices={"N9"},
        blocked_debtors={"D9"},
        rejected=[error("schema_violation", "line 4, /OpenItems/Debtor[1]: missing City", 4, "/OpenItems/Debtor[1]")],
    )
    read, write = os.pipe()

    def writer() -> None:
        write_entries(write, sent)
        write_outcome(write, outcome)
        os.close(write)

    thread = threading.Thread(target=writer)
    thread.start()
    received = Outcome()
    frames = FrameReader(read)
    try:
        got = list(read_entries(frames, received))
    finally:
        thread.join()
        frames.close()
        os.close(read)
    assert got == sent
    assert got[3].invoice.sent_at == sent[3].invoice.sent_at and str(got[3].invoice.sent_at).endswith("-05:00")
    assert str(got[1].invoice.amount_total) == "-12.50" and str(got[0].invoice.amount_open) == "0.00"
    assert received == outcome and received.rejected[0].severity is Severity.ERROR


def test_a_worker_that_stops_without_its_outcome_is_noticed() -> None:
    read, write = os.pipe()
    write_entries(write, entries(3))
    os.close(write)
    frames = FrameReader(read)
    with pytest.raises(EOFError):
        list(read_entries(frames, Outcome()))
    frames.close()
    os.close(read)
