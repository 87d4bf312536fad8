"""The column-wise payt-csv reader (gateway.csv_columnar) gives what the reference reader gives.

The reference is ``parse_payt_csv`` followed by ``StageRows``. Both read the same bytes here and must agree on
every stage row, every problem, the blocked keys, the row count and the rows left out; debtor versions must
agree on what they store (each debtor's data, in line order). Blocks are made small so that a file of a few
rows has many, and the hand-over to the reference happens anywhere.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
from dataclasses import replace

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.config import Administration, KindSettings
from gateway.csv_columnar import ColumnarRead
from gateway.formats import parse_csv
from gateway.pipeline import stage_policy
from gateway.stage_rows import StageRows

EXAMPLES = int(os.environ.get("PAYT_FUZZ_EXAMPLES", "150"))

HEADER = [
    "administration_code",
    "debtor_code",
    "debtor_company_name",
    "debtor_email",
    "debtor_post_street_1",
    "debtor_post_postalcode",
    "debtor_post_city",
    "debtor_post_country_code",
    "debtor_iban",
    "invoice_number",
    "invoice_date",
    "invoice_due_date",
    "invoice_total_amount_inc_vat",
    "invoice_open_amount_inc_vat",
    "invoice_currency_code",
    "invoice_description",
    "invoice_payment_condition",
    "invoice_sent_at",
]
ADMIN = Administration(code="ADM01", name="Test")


def clean_row(n: int, debtor: int = 1) -> list[str]:
    return [
        "ADM01",
        f"D{debtor}",
        f"Klant {debtor} B.V.",
        f"info@klant{debtor}.nl",
        "Kerkstraat 1",
        "1234 AB",
        "Utrecht",
        "NL",
        "NL91ABNA0417164300",
        f"F{n}",
        "2026-03-01",
        "2026-03-31",
        "121.00",
        "121.00",
        "EUR",
        f"Levering {n}",
        "30 dagen",
        "",
    ]


def csv_bytes(rows: list[list[str]], eol: str = "\n", header: list[str] = HEADER) -> bytes:
    return "".join(";".join(row) + eol for row in [header, *rows]).encode()


def outcome(snapshot, rows: StageRows, batches) -> dict[str, object]:  # type: ignore[no-untyped-def]
    invoice_rows = [row for batch in batches for row in batch[0]]
    versions: dict[str, list[tuple[object, ...]]] = {}
    for batch in batches:
        for code, line, _fingerprint, *values in batch[1]:
            versions.setdefault(code, []).append((line, tuple(values)))
    stored = {}  # each debtor's data in line order, repeats of the same data as one
    for code, seen in versions.items():
        data = [values for _, values in sorted(seen)]
        stored[code] = [v for i, v in enumerate(data) if i == 0 or data[i - 1] != v]
    return {
        "invoice_rows": invoice_rows,
        "debtors": stored,
        "problems": snapshot.problems,
        "blocked_invoices": snapshot.blocked_invoices,
        "blocked_debtors": snapshot.blocked_debtors,
        "rows": snapshot.rows,
        "stage_blocked": rows.blocked_invoices,
        "ignored": rows.ignored,
    }


def reference(data: bytes, admin: Administration = ADMIN) -> dict[str, object]:
    rows = StageRows(stage_policy(admin), naive_utc=True)
    snapshot = parse_csv(io.BytesIO(data), admin)
    return outcome(snapshot, rows, list(rows.batches(snapshot.entries)))


def columnar(
    data: bytes, admin: Administration = ADMIN, block_bytes: int = 400
) -> tuple[dict[str, object], ColumnarRead]:
    rows = StageRows(stage_policy(admin), naive_utc=True)
    read = ColumnarRead(io.BytesIO(data), admin, rows, block_bytes=block_bytes)
    return outcome(read.snapshot, rows, list(read.batches())), read


# ------------------------------------------------------------------------------------------ clean files


@pytest.mark.parametrize("eol", ["\n", "\r\n"])
def test_a_clean_file_is_read_column_wise_to_the_end(eol: str) -> None:
    rows = [clean_row(n, debtor=n // 3) for n in range(200)]
    data = csv_bytes(rows, eol)
    got, read = columnar(data, block_bytes=2000)
    assert got == reference(data)
    assert read.rows_read == 200 and read.handed_over is None
    assert got["rows"] == 200 and len(got["invoice_rows"]) == 200  # type: ignore[arg-type]


def test_the_stage_rows_of_a_clean_file_are_the_reference_rows() -> None:
    rows = [clean_row(1), clean_row(2)]
    rows[1][12:14] = ["-12,5", "-0,01"]  # a credit note, comma decimals, one decimal
    rows[1][14] = ""  # the administration's currency
    rows[1][16] = "  "  # blank: None
    got, read = columnar(csv_bytes(rows), block_bytes=1 << 20)
    assert read.rows_read == 2
    first, second = got["invoice_rows"]  # type: ignore[misc]
    assert first == (2, "D1", "F1", "2026-03-01", "2026-03-31", 12100, 12100, "EUR", "Levering 1", "30 dagen",
                     None, None, None, None, "invoice", True)  # fmt: skip
    assert second[5:8] == (-1250, -1, "EUR") and second[9] is None and second[14] == "credit_note"


def test_a_debtors_warning_is_reported_on_each_of_its_rows_and_the_rows_are_staged() -> None:
    rows = [clean_row(n, debtor=1) for n in range(3)] + [clean_row(n, debtor=2) for n in range(3, 5)]
    for row in rows[:3]:
        row[8] = "NL00ABNA0417164300"  # an IBAN with a wrong check: a warning, the row is still good
    data = csv_bytes(rows)
    got, read = columnar(data)
    assert got == reference(data)
    assert read.rows_read == 5 and read.handed_over is None
    assert [(p.code, p.row) for p in got["problems"]] == [("invalid_iban", 2), ("invalid_iban", 3), ("invalid_iban", 4)]  # type: ignore[attr-defined]


def test_skipped_kinds_are_left_out_and_counted_as_the_reference_does() -> None:
    admin = replace(ADMIN, kinds=KindSettings(zero_amount="skip", prepaid="skip"))
    rows = [clean_row(n) for n in range(4)]
    rows[1][12:14] = ["0.00", "0.00"]
    rows[2][13] = "0"
    data = csv_bytes(rows)
    got, read = columnar(data, admin)
    assert got == reference(data, admin)
    assert read.handed_over is None and got["ignored"] == 2 and got["stage_blocked"] == {"F1", "F2"}


# ------------------------------------------------------------------------------------------ hand-over


@pytest.mark.parametrize(
    ("column", "value", "reason"),
    [
        (9, "", "a row error (no invoice number)"),
        (15, 'met "aanhalingstekens"', "a quote: only the reference reads RFC 4180 quoting"),
        (12, "1.234,56", "an amount only the reference's generic path reads"),
        (10, "01-03-2026", "a date in another form"),
        (6, "", "a debtor error (no city)"),
        (15, "tab\x1f", "a character str.strip() removes and polars keeps"),
        (17, "2026-03-01", "a sent date"),
        (13, "500.00", "an open amount above the total (a warning)"),
    ],
)
def test_a_block_the_path_does_not_vouch_for_hands_the_rest_to_the_reference(
    column: int, value: str, reason: str
) -> None:
    rows = [clean_row(n, debtor=n // 4) for n in range(60)]
    rows[40][column] = value
    data = csv_bytes(rows)
    got, read = columnar(data, block_bytes=1500)
    assert got == reference(data), reason
    assert read.handed_over is not None and 2 < read.handed_over <= 42, reason
    assert read.rows_read == read.handed_over - 2


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        (lambda d: d.replace(b"\nADM01;D5;", b"\n\nADM01;D5;", 1), "a blank line"),
        (lambda d: d.replace(b";\r\nADM01;D6;", b";\rADM01;D6;", 1), "a lone CR ends a line"),
        (lambda d: d.replace(b";Utrecht;NL;", b";Utrecht;NL;extra;", 1), "a row with a field too many"),
        (lambda d: d.replace(b";Utrecht;NL;", b";Utrecht;", 1), "a row with a field too few"),
    ],
)
def test_damaged_lines_go_to_the_reference(damage, reason: str) -> None:  # type: ignore[no-untyped-def]
    rows = [clean_row(n, debtor=n // 4) for n in range(60)]
    data = damage(csv_bytes(rows, "\r\n"))
    assert data != csv_bytes(rows, "\r\n")
    got, read = columnar(data, block_bytes=1500)
    assert got == reference(data), reason
    assert read.handed_over is not None


def test_files_the_path_never_reads() -> None:
    rows = [clean_row(n) for n in range(5)]
    for data in (
        csv_bytes(rows).decode().encode("cp1252") + "é".encode("cp1252"),  # Windows-1252
        csv_bytes(rows).decode().encode("utf-16"),
        b'"debtor_code";' + csv_bytes(rows)[len("administration_code;debtor_code;") :],  # a quoted header is fine
    ):
        try:
            expected = reference(data)
        except Exception as exc:  # both must reject alike
            with pytest.raises(type(exc)):
                columnar(data)
            continue
        got, _ = columnar(data)
        assert got == expected
    got, read = columnar(csv_bytes(rows).decode().encode("utf-16"))
    assert read.rows_read == 0 and read.handed_over == 2


def test_an_ignore_list_leaves_the_whole_file_to_the_reference() -> None:
    admin = replace(ADMIN, ignore=replace(ADMIN.ignore, invoices=("F1",)))
    data = csv_bytes([clean_row(n) for n in range(5)])
    got, read = columnar(data, admin)
    assert got == reference(data, admin) and got["ignored"] == 1
    assert read.rows_read == 0


# ------------------------------------------------------------------------------------------ properties


def test_polars_strips_what_python_strips_but_the_information_separators() -> None:
    every = [chr(c) for c in range(0x110000) if not 0xD800 <= c <= 0xDFFF]
    stripped = pl.Series([f"{c}x{c}" for c in every]).str.strip_chars().to_list()
    differ = [c for c, s in zip(every, stripped, strict=True) if s != f"{c}x{c}".strip()]
    assert differ == ["\x1c", "\x1d", "\x1e", "\x1f"]


CELLS = {
    0: ["ADM01", "", "ADM02", " ADM01"],
    6: ["Utrecht", "", " Utrecht "],
    8: ["NL91ABNA0417164300", "NL00ABNA0417164300", ""],
    9: ["F{n}", " F{n} ", "F{n}\u00a0", "", "x" * 256, "F1"],
    10: ["2026-03-01", "2026-02-30", "1899-12-31", "2026-3-01", " 2026-03-01", "01-03-2026", "2026-03-01T00:00"],
    11: ["2026-03-31", "2026-02-28", "2199-12-31"],
    12: ["121.00", "121", "121,5", "-0.00", "-0,01", "007.50", "1.234,56", "12.345", "0", "1e3", "+5", "€ 5"],
    13: ["121.00", "0", "60.5", "-1", "999", "121"],
    14: ["EUR", "", "usd", "USD", "EURO"],
    15: ["Levering {n}", "", "  ", "é" * 255, "é" * 256, " spatie ", "a\u2003", 'a"b', "\x1ca"],
    16: ["30 dagen", "", "\t30 dagen"],
    17: ["", "2026-03-01", "x"],
}


@st.composite
def files(draw: st.DrawFn) -> tuple[bytes, int]:
    rows = []
    for n in range(draw(st.integers(1, 30))):
        row = clean_row(n, debtor=draw(st.integers(0, 4)))
        if draw(st.integers(0, 3)) == 0:
            column = draw(st.sampled_from(sorted(CELLS)))
            row[column] = draw(st.sampled_from(CELLS[column])).format(n=n)
        rows.append(row)
    data = csv_bytes(rows, draw(st.sampled_from(["\n", "\r\n"])))
    if draw(st.booleans()):
        data = data.rstrip(b"\r\n")  # no line end after the last row
    return data, draw(st.sampled_from([200, 700, 3000, 1 << 20]))


@settings(max_examples=max(EXAMPLES, 300), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(files(), st.sampled_from(["import_no_send", "skip"]))
def test_any_mix_of_rows_gives_what_the_reference_gives(file: tuple[bytes, int], prepaid: str) -> None:
    data, block_bytes = file
    admin = replace(ADMIN, kinds=KindSettings(prepaid=prepaid, zero_amount=prepaid))
    got, _ = columnar(data, admin, block_bytes)
    assert got == reference(data, admin)


def test_the_parse_worker_reads_payt_csv_column_wise() -> None:
    from gateway import parse_worker

    job = parse_worker.Job(parse_csv, ADMIN, stage_policy(ADMIN), True, -1, 0)
    data = csv_bytes([clean_row(n) for n in range(3)])
    snapshot, batches = parse_worker._stage_rows(job, io.BytesIO(data), StageRows(job.policy, True))
    assert isinstance(batches.gi_frame.f_locals["self"], ColumnarRead)  # type: ignore[attr-defined]
    assert [r[2] for b in batches for r in b[0]] == ["F0", "F1", "F2"] and snapshot.rows == 3


def test_only_the_parse_worker_imports_polars() -> None:
    """polars takes ~0.2 s to import: the command line and the daemon do without it."""
    code = "import sys, gateway.cli, gateway.daemon, gateway.pipeline; print('polars' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
