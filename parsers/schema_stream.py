"""A yes-or-no schema check of a whole XML file in libxml2's C code, without a tree and without Python per element.

``clean(fd, offset, xsd)`` runs libxml2's streaming validation (``xmlSchemaValidateStream``: the parser's
events go to the validator only, no tree is built) over the file on descriptor ``fd`` from ``offset`` and
answers:

- ``True``: libxml2 found nothing to say: the file is well-formed, declares no DOCTYPE and is valid
  against ``xsd``;
- ``False``: it found something (it stops at the first error); the caller runs the full validation that
  locates and explains every error;
- ``None``: the check cannot run here (no ``/proc/self/fd``, or lxml's libxml2 does not export the
  functions); the caller runs the full validation.

It is the libxml2 that lxml carries (lxml's extension module exports its functions), called through
``ctypes``: the same library and version as every other validation of the gateway, so the verdict is the
one lxml's ``iterparse(schema=...)`` gives, at about half its cost (1M payt-xml invoices: 6.4 s of CPU
against 12 s), in ~20 MB. ``xsd`` is compiled as it is: identity constraints (``xs:unique``) keep every key
until the end of the document, so a caller checks those itself (``parsers.unique_keys``).

The file is read through a descriptor of its own (``/proc/self/fd/N`` opened again), so the reading does not
move the offset that ``fd`` shares with the parent process. A DOCTYPE is refused before libxml2 reads the
file (``parsers.xml_safety.head_root``, which reads ``parsers.payt_xml``'s head too), so no entity is ever
declared, let alone loaded.
"""

from __future__ import annotations

import ctypes
import functools
import os
from typing import Any

from lxml import etree

from gateway.errors import RejectFile
from parsers.xml_safety import head_root

_P = ctypes.c_void_p
_ERROR_HANDLER = ctypes.CFUNCTYPE(None, _P, _P)  # xmlStructuredErrorFunc(void *ctx, const xmlError *error)


class _LibXml2:
    """The few libxml2 functions the check calls, typed."""

    def __init__(self, library: Any):
        def fn(name: str, restype: Any, *argtypes: Any) -> Any:
            function = getattr(library, name)
            function.restype = restype
            function.argtypes = list(argtypes)
            return function

        self.new_parser_ctxt = fn("xmlSchemaNewMemParserCtxt", _P, ctypes.c_char_p, ctypes.c_int)
        self.parse_schema = fn("xmlSchemaParse", _P, _P)
        self.free_parser_ctxt = fn("xmlSchemaFreeParserCtxt", None, _P)
        self.free_schema = fn("xmlSchemaFree", None, _P)
        self.new_valid_ctxt = fn("xmlSchemaNewValidCtxt", _P, _P)
        self.free_valid_ctxt = fn("xmlSchemaFreeValidCtxt", None, _P)
        self.set_errors = fn("xmlSchemaSetValidStructuredErrors", None, _P, _ERROR_HANDLER, _P)
        self.parser_of = fn("xmlSchemaValidCtxtGetParserCtxt", _P, _P)
        self.stop_parser = fn("xmlStopParser", None, _P)
        self.input_from_fd = fn("xmlParserInputBufferCreateFd", _P, ctypes.c_int, ctypes.c_int)
        self.validate_stream = fn("xmlSchemaValidateStream", ctypes.c_int, _P, _P, ctypes.c_int, _P, _P)


@functools.cache
def _libxml2() -> _LibXml2 | None:
    try:
        return _LibXml2(ctypes.CDLL(etree.__file__))
    except (OSError, AttributeError):  # not loadable, or built against a libxml2 that hides its symbols
        return None


def clean(fd: int, offset: int, xsd: bytes) -> bool | None:
    """True when the file on ``fd`` from ``offset`` is well-formed, has no DOCTYPE and is valid against
    ``xsd``; False when libxml2 says anything at all; None when the check cannot run here."""
    lib = _libxml2()
    if lib is None:
        return None
    try:
        own = os.open(f"/proc/self/fd/{fd}", os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        if not _head_is_plain(own, offset):
            return False
        os.lseek(own, offset, os.SEEK_SET)
        return _validate(lib, own, xsd)
    finally:
        os.close(own)


def _head_is_plain(fd: int, offset: int) -> bool:
    """The root element starts within the first MiB, and no DOCTYPE comes before it."""
    position = offset

    def read(size: int) -> bytes:
        nonlocal position
        chunk = os.pread(fd, size, position)
        position += len(chunk)
        return chunk

    try:
        head_root(read)
    except RejectFile:
        return False
    return True


def _validate(lib: _LibXml2, fd: int, xsd: bytes) -> bool | None:
    parser_ctxt = lib.new_parser_ctxt(xsd, len(xsd))
    if not parser_ctxt:
        return None
    schema = lib.parse_schema(parser_ctxt)
    lib.free_parser_ctxt(parser_ctxt)
    if not schema:
        return None
    try:
        valid_ctxt = lib.new_valid_ctxt(schema)
        if not valid_ctxt:
            return None
        try:
            return _run(lib, valid_ctxt, fd)
        finally:
            lib.free_valid_ctxt(valid_ctxt)
    finally:
        lib.free_schema(schema)


def _run(lib: _LibXml2, valid_ctxt: int, fd: int) -> bool | None:
    said = 0

    def on_error(_ctx: Any, _error: Any) -> None:
        nonlocal said
        said += 1
        if said == 1:  # the caller locates every error itself: reading on would only cost time
            parser = lib.parser_of(valid_ctxt)
            if parser:
                lib.stop_parser(parser)

    handler = _ERROR_HANDLER(on_error)  # kept alive until libxml2 is done with it
    lib.set_errors(valid_ctxt, handler, None)
    source = lib.input_from_fd(fd, 0)  # XML_CHAR_ENCODING_NONE: the encoding is read from the file
    if not source:
        return None
    # The parser that libxml2 makes here takes ``source`` and frees it (it leaves ``fd`` open).
    code = lib.validate_stream(valid_ctxt, source, 0, None, None)
    return code == 0 and said == 0
