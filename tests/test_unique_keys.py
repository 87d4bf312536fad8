"""xs:unique checked in the stream: the derived schema, the hashed keys, and a hash collision that is no error."""

from __future__ import annotations

import io

import pytest
from lxml import etree

from parsers.payt_xml_schema import DEBTOR, INVOICE, FirstPass, explain, first_pass, load_schema
from parsers.unique_keys import HashedKeys, KeySpec, without_identity_constraints
from tests.test_payt_xml import VALID

XSD_HEAD = (
    '<xs:schema xmlns:xs="http://www.w3.org/2001/XMLSchema" xmlns:t="urn:t" targetNamespace="urn:t" '
    'elementFormDefault="qualified"><xs:element name="R"><xs:complexType><xs:sequence>'
    '<xs:element name="E" maxOccurs="unbounded"><xs:complexType><xs:attribute name="id"/></xs:complexType>'
    "</xs:element></xs:sequence></xs:complexType>"
)


def test_the_published_schema_loses_its_constraints_and_lists_them() -> None:
    loaded = load_schema()
    assert loaded.keys == (
        KeySpec("UniqueDebtorCode", DEBTOR, "code"),
        KeySpec("UniqueInvoiceNumber", INVOICE, "number"),
    )
    twice = VALID.replace('number="2026-0044"', 'number="2026-0042"')
    assert loaded.schema.validate(etree.fromstring(twice.encode())), "the streaming schema has no xs:unique"
    assert not loaded.schema.validate(etree.fromstring(twice.replace("<City>Zeist</City>", "").encode()))


def test_a_constraint_that_cannot_be_checked_in_the_stream_is_refused() -> None:
    key = '<xs:key name="K"><xs:selector xpath="t:E"/><xs:field xpath="@id"/></xs:key></xs:element></xs:schema>'
    with pytest.raises(ValueError, match="only xs:unique"):
        without_identity_constraints(etree.fromstring(XSD_HEAD + key))
    nested = '<xs:unique name="U"><xs:selector xpath=".//t:E"/><xs:field xpath="@id"/></xs:unique>'
    with pytest.raises(ValueError, match="unsupported"):
        without_identity_constraints(etree.fromstring(XSD_HEAD + nested + "</xs:element></xs:schema>"))
    plain = '<xs:unique name="U"><xs:selector xpath="t:E"/><xs:field xpath="@id"/></xs:unique>'
    source = etree.fromstring(XSD_HEAD + plain + "</xs:element></xs:schema>")
    document, keys = without_identity_constraints(source)
    assert keys == (KeySpec("U", "{urn:t}E", "id"),)
    assert len(source.findall(".//{*}unique")) == 1 and not document.findall(".//{*}unique"), "a copy is changed"


def test_hashed_keys_name_the_repeated_hashes_only() -> None:
    keys = HashedKeys()
    for value in [f"N{i}" for i in range(5000)] + ["N17", "N4242", "N17"]:
        keys.add(value)
    assert keys.repeated() == {hash("N17"), hash("N4242")}
    assert sum(len(b) for b in keys.buckets) == 5003


def test_the_first_pass_finds_repeated_debtor_codes_and_invoice_numbers() -> None:
    valid = first_pass(io.BytesIO(VALID.encode()))
    assert valid.valid and not valid.repeated
    twice = VALID.replace('number="2026-0044"', 'number="2026-0042"').replace('code="10046"', 'code="10045"')
    found = first_pass(io.BytesIO(twice.encode()))
    assert not found.valid and not found.messages
    assert found.repeated == {"UniqueDebtorCode": {hash("10045")}, "UniqueInvoiceNumber": {hash("2026-0042")}}


def test_a_hash_collision_is_no_error() -> None:
    # Two different keys with the same hash: the first pass names the hash, the exact second pass finds no
    # key twice, so the file is valid.
    collided = FirstPass(False, repeated={"UniqueInvoiceNumber": {hash("2026-0042")}})
    assert explain(io.BytesIO(VALID.encode()), collided) == []
