"""The second process for a large payt-xml file: validate and read it in one parse, hand the entries over.

    python -m parsers.payt_xml_worker FD OFFSET ADMINISTRATION CURRENCY COUNTRY DATE_ORDER

reads the file on the inherited descriptor FD from OFFSET (with ``pread``: the parent's file offset is
untouched), validates it against the schema while it extracts the entries (``validating_entries``: one
parse for both; the file is read again only to locate the errors of an invalid file), and writes the
entries to stdout as they come, then the outcome with the verdict (``parsers.payt_xml_wire``). The parser
(``parsers.payt_xml``) stages the entries while this runs and takes nothing before the outcome says the
file is valid. Exit status 0 whatever the verdict; anything else is a failure of the worker itself (its
traceback on stderr).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import IO, cast

from gateway.errors import RejectFile
from gateway.records import Snapshot
from parsers.payt_xml import XmlOptions, validating_entries
from parsers.payt_xml_schema import PreadReader
from parsers.payt_xml_wire import Outcome, write_entries, write_outcome


def run(source: IO[bytes], options: XmlOptions, out: int) -> Outcome:
    """Write the entries of ``source`` to the file descriptor ``out``; return the outcome with the verdict."""
    snapshot = Snapshot(administration_code=options.administration_code)
    outcome = Outcome()
    try:
        write_entries(out, validating_entries(source, snapshot, options))
    except RejectFile as exc:
        outcome.rejected = exc.problems
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
