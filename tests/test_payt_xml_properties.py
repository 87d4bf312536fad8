"""Fuzzing the payt-xml reader: arbitrary bytes, a valid document mutated byte by byte, and documents whose
element texts and attributes are arbitrary. Each gives a Snapshot (exhausted) or a RejectFile, never any other
exception. ``PAYT_FUZZ_EXAMPLES`` raises the number of examples (benchmarks/fuzz_readers.py: the long run)."""

from __future__ import annotations

import io
import os
from xml.sax.saxutils import escape, quoteattr

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from gateway.errors import RejectFile
from gateway.records import Severity
from parsers.payt_xml import XmlOptions, parse_payt_xml
from tests.test_payt_xml import HEAD, VALID

EXAMPLES = int(os.environ.get("PAYT_FUZZ_EXAMPLES", "100"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
NAMESPACE = "urn:payt-gateway:open-items:1"


def consume(data: bytes) -> None:
    """Parse and exhaust; anything but a Snapshot or a RejectFile propagates and fails the test."""
    try:
        snapshot = parse_payt_xml(io.BytesIO(data), XmlOptions("ACME"))
        entries = list(snapshot.entries)
    except RejectFile as exc:
        assert any(p.severity is Severity.ERROR for p in exc.problems)  # (with a notice when truncated)
        return
    assert snapshot.rows >= len(entries)
    for entry in entries:
        assert entry.invoice.debtor_code == entry.debtor.code


@FUZZ
@given(st.binary(max_size=800))
def test_arbitrary_bytes(data: bytes) -> None:
    consume(data)


@FUZZ
@given(st.binary(max_size=400))
@example(b"!")  # found by this test: a document cut short escaped as lxml's XMLSyntaxError, not a RejectFile
def test_arbitrary_bytes_after_the_root_element(data: bytes) -> None:
    consume((HEAD + f'<OpenItems xmlns="{NAMESPACE}" administrationCode="ACME">').encode() + data)


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    """The valid document with a few bytes replaced, inserted or removed."""
    data = bytearray(VALID.encode("utf-8"))
    for _ in range(draw(st.integers(1, 6))):
        at = draw(st.integers(0, len(data) - 1))
        action = draw(st.sampled_from(["replace", "insert", "delete"]))
        byte = draw(st.integers(0, 255))
        if action == "replace":
            data[at] = byte
        elif action == "insert":
            data.insert(at, byte)
        else:
            del data[at]
    return bytes(data)


@FUZZ
@given(mutated())
def test_a_valid_document_mutated(data: bytes) -> None:
    consume(data)


TEXT = st.one_of(
    st.text(max_size=20),
    st.sampled_from(["2026-02-28", "28-02-2026", "1210.00", "-0.001", "1e3", "NL", "nl", "true", "", " ", "x" * 300]),
)


@st.composite
def arbitrary_values(draw: st.DrawFn) -> bytes:
    """The right shape, arbitrary values (escaped: well-formed XML, for the schema and the business checks)."""
    invoices = "".join(
        f"<Invoice number={quoteattr(draw(TEXT))}><InvoiceDate>{escape(draw(TEXT))}</InvoiceDate>"
        f"<DueDate>{escape(draw(TEXT))}</DueDate><TotalAmount>{escape(draw(TEXT))}</TotalAmount>"
        f"<OpenAmount>{escape(draw(TEXT))}</OpenAmount></Invoice>"
        for _ in range(draw(st.integers(0, 3)))
    )
    debtor = (
        f"<Debtor code={quoteattr(draw(TEXT))}><Name>{escape(draw(TEXT))}</Name><Address><Street1>"
        f"{escape(draw(TEXT))}</Street1><PostalCode>{escape(draw(TEXT))}</PostalCode><City>{escape(draw(TEXT))}"
        f"</City><Country>{escape(draw(TEXT))}</Country></Address>{invoices}</Debtor>"
    )
    root = f'<OpenItems xmlns="{NAMESPACE}" administrationCode={quoteattr(draw(TEXT))}>'
    return (HEAD + root + debtor * draw(st.integers(0, 2)) + "</OpenItems>").encode("utf-8", "surrogatepass")


@FUZZ
@given(arbitrary_values())
def test_arbitrary_values_in_the_right_shape(data: bytes) -> None:
    consume(data)
