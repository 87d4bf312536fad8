"""A month of simulated days through the CLI with --now: imports, a payment, pauses, Easter and King's Day.

Every pass of the daemon's grid is run as ``send-due`` (three a day: 08:00, 11:00 and 16:30); every
message is read back from its ``.eml`` file: when it went, to whom, what it says.
"""

from __future__ import annotations

import email
import email.policy
import json
from datetime import date, datetime, timedelta
from email.message import EmailMessage
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from gateway.cli import main

AMS = ZoneInfo("Europe/Amsterdam")
HEADER = (
    "debtor_code;debtor_company_name;debtor_lastname;debtor_is_company;debtor_email;debtor_language_code;"
    "debtor_post_street_1;debtor_post_postalcode;debtor_post_city;invoice_number;invoice_date;invoice_due_date;"
    "invoice_total_amount_inc_vat;invoice_open_amount_inc_vat;invoice_sent_at"
)
# number: (debtor, company name, last name, is company, e-mail, language, invoice date, due date, amount, sent_at)
ITEMS: dict[str, tuple[str, ...]] = {
    "A": ("D1", "", "Jansen", "0", "a@example.org", "nl", "2026-03-30", "2026-04-10", "121.00", ""),
    "B": ("D2", "Bee Ltd", "", "1", "b@example.org", "en", "2026-03-30", "2026-04-13", "80.00", ""),
    "C": ("D3", "", "de Vries", "0", "c@example.org", "nl", "2026-04-04", "2026-05-04", "60.00", ""),
    "D": ("D4", "Dee B.V.", "", "1", "d@example.org", "nl", "2026-04-01", "2026-05-01", "70.00", ""),
    "E": ("D5", "Eee Ltd", "", "1", "e@example.org", "en", "2026-03-27", "2026-04-01", "50.00", "2026-03-27"),
    "G": ("D6", "Gee B.V.", "", "1", "", "nl", "2026-04-09", "2026-05-08", "40.00", ""),
    "H": ("D7", "", "Hendriks", "0", "h@example.org", "nl", "2026-03-30", "2026-04-20", "30.00", ""),
    "J": ("D8", "", "Jacobs", "0", "j@example.org", "nl", "2026-03-30", "2026-04-01", "7.50", ""),
}


def snapshot(path: Path, numbers: str, email_of: dict[str, str] | None = None) -> Path:
    lines = [HEADER]
    for n in numbers:
        debtor, company, last, is_company, mail, lang, inv_date, due, amount, sent_at = ITEMS[n]
        mail = (email_of or {}).get(n, mail)
        lines.append(
            f"{debtor};{company};{last};{is_company};{mail};{lang};Straat 1;1234 AB;Utrecht;{n};{inv_date};{due};"
            f"{amount};{amount};{sent_at}"
        )
    path.write_text("\n".join(lines) + "\n", "utf-8")
    return path


@pytest.fixture
def data(tmp_path: Path) -> Path:
    (tmp_path / "gateway.toml").write_text(
        """
[gateway]
data_dir = "."
database_url = "sqlite:///gateway.db"
[sender]
transport = "outbox"
from_address = "facturen@acme.example"
[administrations.ACME]
name = "Acme B.V."
[administrations.ACME.reminders]
pre_reminder_days = 3
first_after_days = 7
count = 1
interval_days = 7
min_reminder_amount = "10.00"
min_final_reminder_amount = "10.00"
[[interest.statutory]]
from = 2025-07-01
consumer = 6.0
commercial = 10.15
[[interest.statutory]]
from = 2026-01-01
consumer = 4.0
commercial = 10.15
""",
        "utf-8",
    )
    return tmp_path


class Cli:
    def __init__(self, folder: Path, capsys: pytest.CaptureFixture[str]):
        self.folder = folder
        self.capsys = capsys

    def __call__(self, now: datetime, *args: str) -> Any:
        self.capsys.readouterr()
        code = main(["--config", str(self.folder / "gateway.toml"), "--json", "--now", now.isoformat(), *args])
        out = self.capsys.readouterr()
        assert code == 0, (args, out.err)
        return json.loads(out.out)


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=AMS)


def read_outbox(folder: Path) -> list[EmailMessage]:
    found = []
    for path in sorted((folder / "outbox").glob("*.eml")):
        msg = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        assert isinstance(msg, EmailMessage)
        found.append(msg)
    return found


def key(msg: EmailMessage) -> tuple[str, str, int]:
    fields = dict(part.strip().partition("=")[::2] for part in str(msg["X-Payt-Gateway"]).split(";")[1:])
    subject_number = {"A", "B", "C", "D", "E", "G", "H", "J"} & set(str(msg["Subject"]).split())
    assert len(subject_number) == 1, msg["Subject"]
    return subject_number.pop(), fields["kind"], int(fields["sequence"])


EXPECTED = [
    ("2026-03-30 16:30", "A", "invoice", 1),
    ("2026-03-30 16:30", "B", "invoice", 1),
    ("2026-03-30 16:30", "H", "invoice", 1),
    ("2026-03-30 16:30", "J", "invoice", 1),
    ("2026-04-02 11:00", "D", "invoice", 1),  # paused on its slot (1 April 11:00), resumed 2 April 10:10
    ("2026-04-07 08:00", "A", "pre_reminder", 1),
    ("2026-04-07 08:00", "C", "invoice", 1),  # imported Saturday evening; Sunday, Easter Monday
    ("2026-04-09 11:00", "E", "reminder", 1),  # held by a reminders-only pause from 8 April 08:00
    ("2026-04-14 11:00", "G", "invoice", 1),  # held "no e-mail address" until an import delivered one
    ("2026-04-15 08:00", "E", "final_reminder", 1),
    ("2026-04-17 08:00", "A", "reminder", 1),
    ("2026-04-17 08:00", "H", "pre_reminder", 1),
    ("2026-04-24 08:00", "A", "final_reminder", 1),
    ("2026-04-28 08:00", "D", "pre_reminder", 1),
    ("2026-04-28 08:00", "H", "reminder", 1),  # planned on King's Day (27 April)
]


def test_a_month_of_sending(data: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cli = Cli(data, capsys)
    actions: list[tuple[datetime, tuple[str, ...]]] = [
        (at("2026-03-30 15:01"), ("ingest", str(snapshot(data / "s1.csv", "AEHJ")), "--administration", "ACME")),
        (at("2026-03-30 15:29"), ("ingest", str(snapshot(data / "s2.csv", "ABEHJ")), "--administration", "ACME")),
        (at("2026-04-01 10:00"), ("ingest", str(snapshot(data / "s3.csv", "ABDEHJ")), "--administration", "ACME")),
        (at("2026-04-01 10:30"), ("pause", "--administration", "ACME", "--debtor", "D4")),
        (at("2026-04-02 10:10"), ("resume", "--administration", "ACME", "--debtor", "D4")),
        (at("2026-04-04 20:00"), ("ingest", str(snapshot(data / "s4.csv", "ABCDEHJ")), "--administration", "ACME")),
        (at("2026-04-07 07:00"), ("pause", "--administration", "ACME", "--invoice", "E", "--reminders-only")),
        # B is paid: it is missing from the next snapshot, its pre-reminder (10 April) never goes.
        (at("2026-04-09 10:30"), ("ingest", str(snapshot(data / "s5.csv", "ACDEGHJ")), "--administration", "ACME")),
        (at("2026-04-09 10:40"), ("resume", "--administration", "ACME", "--invoice", "E")),
        (
            at("2026-04-14 10:20"),
            (
                "ingest",
                str(snapshot(data / "s6.csv", "ACDEGHJ", {"G": "g@example.org"})),
                "--administration",
                "ACME",
            ),
        ),
    ]
    grid = [
        at(f"{date(2026, 3, 30) + timedelta(days=d)} {hm}") for d in range(32) for hm in ("08:00", "11:00", "16:30")
    ]
    events = sorted([(t, ("send-due",)) for t in grid] + actions, key=lambda e: e[0])
    for moment, args in events:
        if args[0] == "ingest":
            assert cli(moment, *args)["status"] == "performed"
            continue
        result = cli(moment, *args)
        if args[0] == "send-due":
            assert result["unknown"] == result["failed"] == result["bounced"] == 0
        if moment == at("2026-04-01 10:30"):  # the paused debtor is visible as such before its slot
            invoices = {i["number"]: i for i in cli(moment, "invoices")}
            assert invoices["D"]["paused"] is True and invoices["D"]["blocked"] == "paused (debtor D4)"
            held = [o for o in cli(moment, "outbox", "--status", "held") if o["invoice"] == "D"]
            assert held and held[0]["reason"] == "paused (debtor D4)" and held[0]["id"] is None

    messages = read_outbox(data)
    got = sorted(
        (parsedate_to_datetime(str(m["Date"])).astimezone(AMS).strftime("%Y-%m-%d %H:%M"), *key(m)) for m in messages
    )
    assert got == sorted(EXPECTED)
    assert len({key(m) for m in messages}) == len(messages), "no step twice"
    by_key = {key(m): m for m in messages}

    a_invoice = by_key[("A", "invoice", 1)]
    assert a_invoice["To"].addresses[0].addr_spec == "a@example.org"
    assert str(a_invoice["Subject"]) == "Factuur A van Acme B.V."
    assert a_invoice["From"].addresses[0].addr_spec == "facturen@acme.example"
    assert str(a_invoice["Message-ID"]).startswith("<invoice.1.") and a_invoice["Content-Language"] == "nl"
    assert "Geachte heer/mevrouw Jansen" in body(a_invoice) and "€ 121,00" in body(a_invoice)
    b_invoice = by_key[("B", "invoice", 1)]
    assert str(b_invoice["Subject"]) == "Invoice B from Acme B.V." and "Dear Sir or Madam" in body(b_invoice)
    assert "13 April 2026" in body(b_invoice)
    assert "10 april 2026" in body(by_key[("A", "pre_reminder", 1)])
    reminder = by_key[("A", "reminder", 1)]
    assert str(reminder["Subject"]) == "Herinnering: factuur A" and "reminder@" not in str(reminder["To"])
    assert "binnen 7 dagen, uiterlijk 24 april 2026" in body(reminder)

    # The consumer's 14-day letter: costs, the court-accepted wording, the deadline from the assumed receipt
    # (sent Friday 24 April; Sunday and Monday (King's Day) do not count: received Tuesday 28 April).
    final = body(by_key[("A", "final_reminder", 1)])
    assert "binnen veertien dagen vanaf de dag nadat deze brief bij u is bezorgd" in final
    assert "uiterlijk op 12 mei 2026" in final
    assert "incassokosten verschuldigd van € 40,00" in final and "€ 161,00" in final
    assert "daarnaast de wettelijke rente (artikel 6:119 van het Burgerlijk Wetboek) in rekening brengen" in final
    # A company's final reminder (English): costs and deadline, without the consumer wording.
    company_final = body(by_key[("E", "final_reminder", 1)])
    assert "no later than 1 May 2026" in company_final and "€40.00" in company_final
    assert "fourteen days" not in company_final
    assert "we may charge statutory commercial interest (article 6:119a of the Dutch Civil Code)" in company_final

    outbox = cli(at("2026-04-30 19:00"), "outbox", "--status", "sent")
    assert len(outbox) == len(EXPECTED) and all(o["status"] == "sent" and o["id"] for o in outbox)
    assert {o["deadline"] for o in outbox if o["kind"] == "final_reminder"} == {"2026-05-12", "2026-05-01"}

    invoices = {i["number"]: i for i in cli(at("2026-05-13 09:00"), "invoices", "--status", "all")}
    assert invoices["B"]["status"] == "paid" and invoices["B"]["next_send"] is None
    assert invoices["J"]["blocked"] == "open amount below the minimum of 10.00"
    assert invoices["E"]["skipped"][0]["reason"].startswith("already sent by the bookkeeping")
    assert invoices["A"]["next_send"] is None and invoices["A"]["collectable"] is True
    assert invoices["E"]["collectable"] is True and invoices["H"]["collectable"] is False
    assert invoices["H"]["collectable_reason"] == "no final reminder sent" and invoices["H"]["interest_due"] is None
    # Statutory interest as of --now (13 May): A, a consumer, 11 April .. 13 May = 33 days at 4 % on 121.00:
    # 121 × 4 × 33 / 36500 = 0.4376; E, a company, 2 April .. 13 May = 42 days at 10.15 % on 50.00:
    # 50 × 10.15 × 42 / 36500 = 0.5840.
    assert (invoices["A"]["interest_due"], invoices["E"]["interest_due"]) == ("0.44", "0.58")
    # A year on (--now 2027-04-12): A's first year (11 April 2026 .. 10 April 2027, 365 days at 4 %) gives
    # 121 × 4 × 365 / 36500 = 4.84, added to the amount; then 11 and 12 April 2027 on 125.84: 125.84 × 8 / 36500
    # = 0.0276 → 0.03; 4.87 in all.
    later = {i["number"]: i for i in cli(at("2027-04-12 09:00"), "invoices")}
    assert later["A"]["interest_due"] == "4.87" and later["A"]["collectable"] is True
    at_month_end = {i["number"]: i for i in cli(at("2026-04-30 19:00"), "invoices")}
    assert at_month_end["C"]["next_send"] == {
        "kind": "pre_reminder",
        "sequence": 1,
        "scheduled_for": "2026-05-01T06:00:00+00:00",
    }


def body(msg: EmailMessage) -> str:
    part = msg.get_body(("plain",))
    assert part is not None
    return " ".join(str(part.get_content()).split())
