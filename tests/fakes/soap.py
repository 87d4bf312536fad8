"""SOAP 1.1 plumbing for the fake SOAP vendors: read a request envelope, answer with one, or with a fault.

An ASMX service answers a fault with HTTP 500 and ``text/xml``; a malformed request also gets a fault.
"""

from __future__ import annotations

from typing import Any
from xml.sax.saxutils import escape

from lxml import etree

from tests.fakes.base import Request, Response

SOAP_NS = "http://schemas.xmlsoap.org/soap/envelope/"
XSI_NS = "http://www.w3.org/2001/XMLSchema-instance"
CONTENT_TYPE = "text/xml; charset=utf-8"
PARSER = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)


class BadRequest(Exception):
    pass


def read_envelope(request: Request) -> tuple[Any, Any]:
    """The SOAP header (or None) and the first element of the body."""
    if not request.headers.get("content-type", "").startswith("text/xml"):
        raise BadRequest("Unsupported content type; expected text/xml")
    try:
        root = etree.fromstring(request.body, PARSER)
    except etree.XMLSyntaxError as exc:
        raise BadRequest(f"Server was unable to read request. ---> There is an error in XML document: {exc}") from None
    body = root.find(f"{{{SOAP_NS}}}Body")
    if root.tag != f"{{{SOAP_NS}}}Envelope" or body is None or len(body) == 0:
        raise BadRequest("Server did not recognize the value of HTTP Header SOAPAction: no SOAP body")
    return root.find(f"{{{SOAP_NS}}}Header"), body[0]


def soap_response(body_xml: str, headers: dict[str, str] | None = None) -> Response:
    text = (
        '<?xml version="1.0" encoding="utf-8"?>'
        f'<soap:Envelope xmlns:soap="{SOAP_NS}" xmlns:xsi="{XSI_NS}" xmlns:xsd="http://www.w3.org/2001/XMLSchema">'
        f"<soap:Body>{body_xml}</soap:Body></soap:Envelope>"
    )
    return Response(200, text.encode("utf-8"), {"Content-Type": CONTENT_TYPE, **(headers or {})})


def soap_fault(message: str, code: str = "soap:Client", detail: str = "") -> Response:
    detail_xml = f"<detail>{escape(detail)}</detail>" if detail else "<detail />"
    text = (
        '<?xml version="1.0" encoding="utf-8"?>'
        f'<soap:Envelope xmlns:soap="{SOAP_NS}"><soap:Body><soap:Fault><faultcode>{code}</faultcode>'
        f"<faultstring>{escape(message)}</faultstring>{detail_xml}</soap:Fault></soap:Body></soap:Envelope>"
    )
    return Response(500, text.encode("utf-8"), {"Content-Type": CONTENT_TYPE})


def child_text(parent: Any, ns: str, name: str) -> str | None:
    if parent is None:
        return None
    found = parent.find(f"{{{ns}}}{name}")
    return None if found is None else (found.text or "")
