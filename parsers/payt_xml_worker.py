"""The second process for a large payt-xml file: validate and read it in one parse, hand the entries over.

    python -m parsers.payt_xml_worker FD OFFSET ADMINISTRATION CURRENCY COUNTRY DATE_ORDER

reads the file on the inherited descriptor FD from OFFSET (with ``pread``: the parent's file offset is
untouched), validates it against the schema while it extracts the entries (``ElementStream`` with
``validate=True``: one parse for both), and writes the entries to stdout as they come, then the outcome
(``parsers.payt_xml_wire``). When the first pass finds an error, the file is read again to locate every
error (``explain``). The parser (``parsers.payt_xml``) stages the entries while this runs and takes
nothing before the outcome says the file is valid. Exit status 0 whatever the verdict; anything else is a
failure of the worker itself (its traceback on stderr).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import IO, cast

from gateway.errors import RejectFile
from gateway.records import Severity, Snapshot
from parsers.payt_xml import XmlOptions, extract
from parsers.payt_xml_schema import ElementStream, PreadReader, explain, validate_payt_xml
from parsers.payt_xml_wire import Outcome, write_entries, write_outcome


def run(source: IO[bytes], options: XmlOptions, out: int) -> Outcome:
    """Write the entries of ``source`` to the file descriptor ``out``; return the outcome with the verdict."""
    snapshot = Snapshot(administration_code=options.administration_code)
    stream = ElementStream(source, validate=True)
    outcome = Outcome()
    try:
        write_entries(out, extract(stream, snapshot, options))
        first = stream.verdict()
        if not first.valid:
            source.seek(0)
            outcome.rejected = explain(source, first)
    except RejectFile as exc:
        outcome.rejected = exc.problems
    except Exception:
        source.seek(0)
        try:
            problems = validate_payt_xml(source)  # an invalid file explains a surprise better than a traceback
        except RejectFile as exc:
            problems = exc.problems
        if not any(p.severity is Severity.ERROR for p in problems):
            raise
        outcome.rejected = problems
    outcome.rows = snapshot.rows
    outcome.problems = snapshot.problems
    outcome.blocked_invoices = snapshot.blocked_invoices
    outcome.blocked_debtors = snapshot.blocked_debtors
    return outcome


def main(argv: Sequence[str]) -> int:
    fd, offset, administration, currency, country, date_order = argv
    options = XmlOptions(administration, currency, country or None, date_order)
    out = sys.stdout.fileno()
    outcome = run(cast(IO[bytes], PreadReader(int(fd), int(offset))), options, out)
    write_outcome(out, outcome)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
