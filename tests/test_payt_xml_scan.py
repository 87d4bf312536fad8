"""payt-xml read as text (``parsers.payt_xml_scan``) gives what the lxml reading gives: the same entries, problems
(with their lines and paths), blocked keys, row count and key hashes, for plain files read to the end and for
files that it hands to lxml part of the way (each reason), in chunks of any size."""

from __future__ import annotations

import io
from dataclasses import dataclass
from xml.sax.saxutils import escape, quoteattr

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from gateway.records import Entry, Problem, Snapshot
from parsers.payt_xml import XmlOptions, extract
from parsers.payt_xml_scan import XmlReading
from parsers.payt_xml_schema import ElementStream
from tests.test_payt_xml import HEAD, OPEN, VALID

OPTIONS = XmlOptions("ACME")
NS = "urn:payt-gateway:open-items:1"


@dataclass
class Read:
    entries: list[Entry]
    problems: list[Problem]
    blocked: tuple[set[str], set[str]]
    rows: int
    keys: dict[str, list[int]]  # each key's hashes, sorted


def _read(entries: list[Entry], snapshot: Snapshot, keys: ElementStream) -> Read:
    hashes = {name: sorted(h for bucket in held.buckets for h in bucket) for name, held in keys.hashed.items()}
    blocked = (snapshot.blocked_invoices, snapshot.blocked_debtors)
    return Read(entries, snapshot.problems, blocked, snapshot.rows, hashes)


def by_lxml(data: bytes) -> Read:
    snapshot = Snapshot(administration_code="ACME")
    keys = ElementStream(io.BytesIO(data), validate=False, hash_keys=True)
    return _read(list(extract(keys, snapshot, OPTIONS)), snapshot, keys)


def by_scan(data: bytes, chunk: int = 1 << 20) -> tuple[Read, XmlReading]:
    snapshot = Snapshot(administration_code="ACME")
    reading = XmlReading(io.BytesIO(data), snapshot, OPTIONS, hash_keys=True, chunk_chars=chunk)
    entries = list(reading.entries())
    return _read(entries, snapshot, reading.keys), reading


def assert_same(data: bytes, chunk: int = 1 << 20) -> XmlReading:
    scanned, reading = by_scan(data, chunk)
    assert scanned == by_lxml(data)
    return reading


INVOICE_1 = (
    '<Invoice number="F{n}-1"><InvoiceDate>2026-03-01</InvoiceDate><DueDate>2026-03-31</DueDate>'
    "<TotalAmount>10.00</TotalAmount><OpenAmount>10.00</OpenAmount></Invoice>"
)
INVOICE_2 = (
    '<Invoice number="F{n}-2"><InvoiceDate>2026-03-02</InvoiceDate><DueDate>2026-04-01</DueDate>'
    "<TotalAmount>25.50</TotalAmount><OpenAmount>5.50</OpenAmount><Description>Brood &#x26; banket</Description>"
    "</Invoice>"
)
DEBTOR = (
    """  <Debtor code="D{n}" isCompany="true">
    <Name>Bakkerij {n} &amp; Zn.</Name>
    <Address><Street1>Dorpsstraat {n}</Street1><PostalCode>1234 AB</PostalCode><City>Zeist</City></Address>
    <Email>info{n}@bakkerij.nl</Email>
    """
    + INVOICE_1
    + "\n    "
    + INVOICE_2
    + "\n  </Debtor>\n"
)
WITHOUT_INVOICES = (
    '<Debtor code="E"><LastName>X</LastName><Address><Street1>s</Street1><PostalCode>1</PostalCode>'
    "<City>c</City></Address></Debtor>\n"
)


def document(
    debtors: int = 4, *, head: str = HEAD, root: str = OPEN, change: dict[int, tuple[str, str]] | None = None
) -> str:
    """``debtors`` plain debtors of two invoices each; ``change``: debtor number -> (old, new) text in it."""
    parts = []
    for n in range(1, debtors + 1):
        text = DEBTOR.format(n=n)
        if change and n in change:
            old, new = change[n]
            assert old in text
            text = text.replace(old, new)
        parts.append(text)
    return head + root + "".join(parts) + "</OpenItems>\n"


@pytest.mark.parametrize("chunk", [7, 100, 1 << 20])
def test_a_plain_file_is_scanned_to_the_end_in_chunks_of_any_size(chunk: int) -> None:
    reading = assert_same(document().encode(), chunk)
    assert not reading.handed_over and reading.scanned == 8
    crlf = assert_same(document().replace("\n", "\r\n").encode(), chunk)
    assert not crlf.handed_over and crlf.scanned == 8


def test_the_shared_example_with_its_problems_is_scanned_with_the_same_lines() -> None:
    text = (
        VALID.replace("<DueDate>2026-03-30</DueDate>", "<DueDate>2026-02-01</DueDate>")
        .replace("<Iban>NL91ABNA0417164300</Iban>", "<Iban>NL00ABNA0417164300</Iban>")
        .replace("<OpenAmount>99.95</OpenAmount>", "<OpenAmount>150.00</OpenAmount>")
    )
    reading = assert_same(text.encode())
    assert not reading.handed_over
    lines = sorted((p.row, p.column, p.code) for p in by_lxml(text.encode()).problems)
    assert lines == [
        (11, "/OpenItems/Debtor[1]/Iban", "invalid_iban"),
        (13, "/OpenItems/Debtor[1]/Invoice[1]/DueDate", "due_before_invoice_date"),
        (29, "/OpenItems/Debtor[2]/Invoice[1]/OpenAmount", "open_exceeds_total"),
    ]


def test_a_debtor_without_invoices_and_an_empty_file_are_scanned() -> None:
    reading = assert_same(document(2).replace("</OpenItems>", WITHOUT_INVOICES + "</OpenItems>").encode())
    assert not reading.handed_over and reading.scanned == 4
    nothing = assert_same((HEAD + OPEN + "</OpenItems>").encode())
    assert not nothing.handed_over and nothing.scanned == 0


# Forms the scan does not vouch for, each in debtor 3: lxml reads the file from the start, and the entries of
# debtors 1 and 2 (4), given by the scan already, are not given twice.
HANDED_OVER = {
    "a comment": ("<Email>", "<!-- note --><Email>"),
    "CDATA": ("Dorpsstraat 3", "<![CDATA[Dorpsstraat 3]]>"),
    "a processing instruction": ("<Email>", "<?note x?><Email>"),
    "a self-closing element": ("<Email>", "<Infix/><Email>"),
    "single quotes": ('code="D3"', "code='D3'"),
    "another attribute order": ('code="D3" isCompany="true"', 'isCompany="true" code="D3"'),
    "a prefix": ("<Email>info3@bakkerij.nl</Email>", f'<p:Email xmlns:p="{NS}">info3@bakkerij.nl</p:Email>'),
    "a lone CR": ("<Email>", "\r<Email>"),
    "a CR in a text": ("Dorpsstraat 3", "Dorpsstraat\r\n3"),
    "a line end in an attribute": ('number="F3-1"', 'number="F3&#10;-1"'),
    "an unknown child": ("<Email>", "<Fax>1</Fax><Email>"),
    "invoice children out of order": (
        "<InvoiceDate>2026-03-01</InvoiceDate><DueDate>2026-03-31</DueDate>",
        "<DueDate>2026-03-31</DueDate><InvoiceDate>2026-03-01</InvoiceDate>",
    ),
    "a tab in an attribute": ('code="D3"', 'code="D&#9;3"'),
}


@pytest.mark.parametrize("change", HANDED_OVER.values(), ids=HANDED_OVER.keys())
def test_what_the_scan_does_not_vouch_for_is_read_by_lxml_from_the_start(change: tuple[str, str]) -> None:
    reading = assert_same(document(change={3: change}).encode(), chunk=64)
    if change[1].startswith('number="F3&#10;') or change[1].startswith('code="D&#9;'):
        # character references in an attribute are taken (lxml keeps them): scanned to the end
        assert not reading.handed_over and reading.scanned == 8
        return
    assert reading.handed_over and reading.scanned == 4


@pytest.mark.parametrize(
    ("head", "root"),
    [
        ('<?xml version="1.0" encoding="ISO-8859-1"?>\n', OPEN),
        (HEAD + "<!-- exported -->\n", OPEN),
        (HEAD, OPEN.replace('administrationCode="ACME"', "administrationCode='ACME'")),
        ("\ufeff" + HEAD.replace('encoding="UTF-8"', 'encoding="utf-8" standalone="yes"'), OPEN),
        ("", OPEN.replace(" administrationCode", "\r\n    administrationCode")),
    ],
    ids=["latin-1", "comment before the root", "single-quoted root attribute", "BOM and standalone", "no declaration"],
)
def test_the_head_decides_whether_the_scan_takes_the_file(head: str, root: str) -> None:
    text = document(head=head, root=root)
    data = text.encode("latin-1") if "ISO-8859-1" in head else text.encode()
    reading = assert_same(data)
    taken = "ISO" not in head and "<!--" not in head and "'ACME'" not in root
    assert reading.handed_over is not taken
    assert reading.scanned == (8 if taken else 0)


def test_after_the_last_debtor_only_the_root_end_tag_is_scanned() -> None:
    reading = assert_same(document().replace("</OpenItems>", "</OpenItems>\n<!-- done -->").encode())
    assert reading.handed_over and reading.scanned == 8


def test_entities_and_character_references_are_resolved_as_lxml_does() -> None:
    text = document(change={2: ("Bakkerij 2 &amp; Zn.", "Bakkerij &lt;2&gt; &quot;&apos; &#233;&#x20AC; &#13;")})
    reading = assert_same(text.encode())
    assert not reading.handed_over
    debtor = next(e.debtor for e in reading_entries(text) if e.debtor.code == "D2")
    assert debtor.company_name == "Bakkerij <2> \"' é€ \r".strip()


def reading_entries(text: str) -> list[Entry]:
    return by_scan(text.encode())[0].entries


# -- any document: generated in the forms above and others, compared with lxml

VALUE = st.one_of(
    st.text(st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), max_size=12),
    st.sampled_from(["2026-02-28", "2026-13-01", "28-02-2026", "10.00", "1,5", "-3", "0", "EUR", "XXX", "NL", " x "]),
    st.sampled_from(["info@example.nl", "not an email", "NL91ABNA0417164300", "NL00ABNA0417164300", "06-1234"]),
)
SEPARATOR = st.sampled_from(["", "\n", "\n    ", "\r\n  ", " "])
DISTURBANCE = st.sampled_from(["", "", "", "<!-- c -->", "\r", "<?pi x?>"])


@st.composite
def documents(draw: st.DrawFn) -> str:
    sep = draw(SEPARATOR)

    def text(tag: str, value: str, attrs: str = "") -> str:
        return f"{sep}<{tag}{attrs}>{escape(value)}</{tag}>"

    debtors = []
    for _ in range(draw(st.integers(0, 4))):
        code = draw(st.sampled_from(["D1", "D2", " D3", "D1"]))
        attrs = f" code={quoteattr(code)}" + draw(st.sampled_from(["", ' isCompany="true"', ' isCompany="0"']))
        children = [text("Name", draw(VALUE))] if draw(st.booleans()) else [text("LastName", draw(VALUE))]
        address = "".join(text(t, draw(VALUE)) for t in ("Street1", "PostalCode", "City"))
        children.append(f"{sep}<Address>{address}{sep}</Address>")
        for _ in range(draw(st.integers(0, 3))):
            kind = draw(st.sampled_from(["", ' type="invoice"', ' type="reminder"', ' type="default"']))
            children.append(text("Email", draw(VALUE), kind))
        for tag in ("Phone", "Language", "Iban"):
            if draw(st.booleans()):
                children.append(text(tag, draw(VALUE)))
        for _ in range(draw(st.integers(0, 3))):
            number = draw(st.sampled_from(["F1", "F2", "F3", " F4", "F1"]))
            parts = [text("InvoiceDate", draw(VALUE)), text("DueDate", draw(VALUE))]
            total = draw(st.sampled_from(["10.00", "-5", "0", "1,5", "x"]))
            parts += [text("TotalAmount", total), text("OpenAmount", draw(st.sampled_from([total, "2.50", "99"])))]
            for tag in ("Currency", "Description", "PaymentReference", "SentAt"):
                if draw(st.integers(0, 3)) == 0:
                    parts.append(text(tag, draw(VALUE)))
            if draw(st.booleans()):
                parts.append(f"{sep}<Document filename={quoteattr(draw(VALUE))}{draw(st.sampled_from(['', ' ']))}/>")
            parts.insert(draw(st.integers(0, len(parts))), draw(DISTURBANCE))
            children.append(f"{sep}<Invoice number={quoteattr(number)}>{''.join(parts)}{sep}</Invoice>")
        children.insert(draw(st.integers(0, len(children))), draw(DISTURBANCE))
        debtors.append(f"{sep}<Debtor{attrs}>{''.join(children)}{sep}</Debtor>")
    return HEAD + OPEN + "".join(debtors) + f"{sep}</OpenItems>"


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(documents(), st.sampled_from([16, 200, 1 << 20]))
def test_any_document_reads_as_lxml_reads_it(text: str, chunk: int) -> None:
    reading = assert_same(text.encode(), chunk)
    event("handed over" if reading.handed_over else "scanned to the end")
