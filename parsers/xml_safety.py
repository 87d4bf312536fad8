"""Safe reading of every XML the gateway reads (FORMATS.md §5).

No DTD is loaded, no entity is resolved, nothing is fetched from the network, XInclude is never processed,
and libxml2's own limits for depth (256) and text size stay on (``huge_tree=False``). A document that
declares a DOCTYPE at all is refused before any of its content is used: the gateway's formats never need
one, and refusing it outright is what makes "billion laughs", quadratic blow-up and external entities
(XXE) file errors in milliseconds whose report cannot contain what an entity pointed at.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import IO, Any

from lxml import etree

from gateway.errors import RejectFile
from gateway.records import error

SAFE_OPTIONS: dict[str, Any] = {
    "resolve_entities": False,
    "no_network": True,
    "load_dtd": False,
    "dtd_validation": False,
    "huge_tree": False,
}


HEAD_CHUNK = 1 << 16
MAX_HEAD = 1 << 20  # the root element's start tag must begin within the first MiB


def head_root(read: Callable[[int], bytes]) -> Any:
    """The root element of a document whose bytes ``read(n)`` gives in turn, read only as far as its start
    tag (at most ``MAX_HEAD`` bytes). Raises ``RejectFile`` for a DOCTYPE, XML that is not well-formed before
    the root, or no element in the first MiB."""
    parser = etree.XMLPullParser(events=("start",), **SAFE_OPTIONS)
    read_so_far = 0
    try:
        while read_so_far < MAX_HEAD:
            chunk = read(HEAD_CHUNK)
            read_so_far += len(chunk)
            if chunk:
                parser.feed(chunk)
            else:
                parser.close()
            for _, root in parser.read_events():
                refuse_doctype(root)
                return root
            if not chunk:
                break
    except etree.XMLSyntaxError as exc:
        for _, root in parser.read_events():
            refuse_doctype(root)  # a DOCTYPE is the reason to give, not what its entities broke
        raise syntax_error(exc) from None
    raise RejectFile([error("empty_file", "the file holds no XML element within its first MiB")])


def safe_parser(schema: etree.XMLSchema | None = None) -> etree.XMLParser:
    """A parser for a whole (small) document, e.g. one UBL invoice."""
    return etree.XMLParser(schema=schema, **SAFE_OPTIONS)


def safe_iterparse(
    source: IO[bytes],
    events: Iterable[str] = ("end",),
    tag: str | None = None,
    schema: etree.XMLSchema | None = None,
) -> Iterator[tuple[str, Any]]:
    """``lxml.etree.iterparse`` with the safe options; a DOCTYPE or malformed XML raises ``RejectFile``.

    With ``schema``, libxml2 validates while it parses but reports a violation only when the document ends
    (see ``parsers.payt_xml``): callers must not act on what they read before the iteration has finished.
    """
    parser = etree.iterparse(source, events=tuple(events), tag=tag, schema=schema, **SAFE_OPTIONS)
    checked = False
    try:
        for event, element in parser:
            if not checked:
                refuse_doctype(element)
                checked = True
            yield event, element
    except etree.XMLSyntaxError as exc:
        raise syntax_error(exc) from None
    if not checked:
        refuse_doctype_of(parser)


def parse_document(data: bytes, schema: etree.XMLSchema | None = None) -> Any:
    """Parse a whole document from bytes. Raises ``RejectFile`` for a DOCTYPE or malformed XML.

    With ``schema``, validation is left to the caller (``schema.validate``), which collects every error.
    """
    try:
        root = etree.fromstring(data, safe_parser())
    except etree.XMLSyntaxError as exc:
        raise syntax_error(exc) from None
    refuse_doctype(root)
    return root


def refuse_doctype(element: Any) -> None:
    docinfo = element.getroottree().docinfo
    if docinfo.doctype or docinfo.internalDTD is not None or docinfo.system_url or docinfo.public_id:
        raise RejectFile(
            [
                error(
                    "xml_doctype_forbidden",
                    "the XML document declares a DOCTYPE (a DTD or entities); that is not allowed: "
                    "remove the <!DOCTYPE ...> declaration",
                )
            ]
        )


def refuse_doctype_of(parser: Any) -> None:
    root = getattr(parser, "root", None)
    if root is not None:
        refuse_doctype(root)


def syntax_error(exc: etree.XMLSyntaxError) -> RejectFile:
    """A libxml2 syntax error as a file error, with its line and column (never the file's content)."""
    line, column = exc.position if exc.position else (exc.lineno, 0)
    message = str(exc.msg or exc).split(" (<string>", 1)[0].split(", line ", 1)[0]
    if "Excessive depth" in message:
        return RejectFile(
            [error("xml_too_deep", f"line {line}: the elements are nested deeper than 256 levels", row=line)]
        )
    if "xmlSAX2Characters: huge text node" in message or "huge" in message.lower():
        return RejectFile([error("xml_too_large", f"line {line}: a text node is larger than 10 MB", row=line)])
    if "Document is empty" in message or ("Start tag expected" in message and line <= 1):
        return RejectFile([error("empty_file", "the file holds no XML element")])
    return RejectFile(
        [error("xml_not_well_formed", f"line {line}, column {column}: the XML is not well-formed: {message}", row=line)]
    )
