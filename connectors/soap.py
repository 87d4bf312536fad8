"""What the SOAP vendors (Twinfield, e-Boekhouden.nl) share: envelopes, safe parsing, faults.

Vendor XML is parsed with the same safe settings as ``parsers.xml_safety`` (connectors never import parsers):
no DTD is loaded, no entity resolved, nothing fetched from the network, libxml2's size and depth limits stay
on, and a document that declares a DOCTYPE at all is refused. Malformed XML is a transient failure (a cut-off
answer); a DOCTYPE is a permanent one (no vendor sends one).

A SOAP 1.1 fault arrives with HTTP 500; ``is_fault`` lets ``VendorHttp`` hand it back instead of retrying it
as a server error, so the connector can read its ``faultstring``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import httpx
from lxml import etree

from connectors.base import PermanentVendorError, TransientVendorError
from parsers.xml_safety import SAFE_OPTIONS

SOAP_NS = "http://schemas.xmlsoap.org/soap/envelope/"
XSI_NS = "http://www.w3.org/2001/XMLSchema-instance"
CONTENT_TYPE = "text/xml; charset=utf-8"

Element = Any  # lxml's _Element; lxml-stubs do not know default namespaces (nsmap {None: ns}) or docinfo fully
_lxml: Any = etree


def parse_xml(data: bytes | str, vendor: str, what: str) -> Element:
    """A whole document from a vendor; ``what`` names it in the reason of a failure."""
    raw = data.encode("utf-8") if isinstance(data, str) else data
    try:
        root: Element = _lxml.fromstring(raw, _lxml.XMLParser(**SAFE_OPTIONS))
    except etree.XMLSyntaxError as exc:
        raise TransientVendorError(f"{vendor}: {what} is not well-formed XML ({exc.msg})") from None
    if root is None:
        raise TransientVendorError(f"{vendor}: {what} is empty")
    docinfo = root.getroottree().docinfo
    if docinfo.doctype or docinfo.internalDTD is not None or docinfo.system_url or docinfo.public_id:
        raise PermanentVendorError(f"{vendor}: {what} declares a DOCTYPE; refused")
    return root


def envelope(body: Element, header: Element | None = None) -> bytes:
    """A SOAP 1.1 envelope around ``body`` (and ``header``), UTF-8 with an XML declaration."""
    env = _lxml.Element(f"{{{SOAP_NS}}}Envelope", nsmap={"soap": SOAP_NS, "xsi": XSI_NS})
    if header is not None:
        etree.SubElement(env, f"{{{SOAP_NS}}}Header").append(header)
    etree.SubElement(env, f"{{{SOAP_NS}}}Body").append(body)
    return bytes(etree.tostring(env, xml_declaration=True, encoding="utf-8"))


def element(ns: str, name: str, children: Iterable[tuple[str, str | None]] = (), **attrs: str) -> Element:
    """``<name xmlns=ns>`` (no namespace when ``ns`` is empty) with one text child per (name, value); a None
    value is left out. lxml escapes the text (an inner XML request travels as character data)."""
    qualify = (lambda tag: f"{{{ns}}}{tag}") if ns else (lambda tag: tag)
    el = _lxml.Element(qualify(name), nsmap={None: ns} if ns else None, **attrs)
    for child, value in children:
        if value is not None:
            etree.SubElement(el, qualify(child)).text = value
    return el


def is_fault(response: httpx.Response) -> bool:
    """An HTTP 500 that carries a SOAP fault is the service's answer, not an outage."""
    return response.status_code == 500 and b"Fault" in response.content[:2000] and b"Envelope" in response.content[:500]


def body_child(response: httpx.Response, vendor: str, operation: str) -> Element:
    """The first element in the SOAP body of a 200 answer; faults and other statuses are errors here."""
    what = f"the answer to {operation}"
    if response.status_code not in (200, 500):
        raise PermanentVendorError(f"{vendor}: {operation} answered HTTP {response.status_code}: {_start(response)}")
    root = parse_xml(response.content, vendor, what)
    body = root.find(f"{{{SOAP_NS}}}Body")
    if body is None or len(body) == 0:
        raise TransientVendorError(f"{vendor}: {what} has no SOAP body")
    child = body[0]
    if child.tag == f"{{{SOAP_NS}}}Fault":
        raise SoapFault(vendor, operation, fault_text(child))
    return child


class SoapFault(PermanentVendorError):
    def __init__(self, vendor: str, operation: str, text: str):
        super().__init__(f"{vendor}: {operation} failed with a SOAP fault: {text}")
        self.text = text


def fault_text(fault: Element) -> str:
    parts = [" ".join((t or "").split()) for t in (fault.findtext("faultcode"), fault.findtext("faultstring"))]
    detail = fault.find("detail")
    if detail is not None:
        parts.append(" ".join(" ".join(detail.itertext()).split()))
    return "; ".join(p for p in parts if p)[:500] or "no faultstring"


def _start(response: httpx.Response) -> str:
    return " ".join(response.text.split())[:200]
