"""The validator process for a large payt-xml file: the schema pass beside the reading of the entries.

    python -m parsers.payt_xml_worker FD OFFSET

validates the file on the inherited descriptor FD from OFFSET against the schema and writes its verdict to
stdout when it is done: the pickled list of problems, empty when the file is valid. The parser
(``parsers.payt_xml``) reads the entries without the schema meanwhile, in its own process, and takes nothing
before this verdict says the file is valid: the two passes over the file run on two cores. Exit status 0
whatever the verdict; anything else is a failure of the validator itself (its traceback on stderr).

The verdict comes in one of two ways:

- ``parsers.schema_stream.clean``: libxml2 validates the file in C, without a tree, against the schema
  without its ``xs:unique`` constraints. A clean file's verdict is empty; its unique keys are the reader's
  to check (``ElementStream(hash_keys=True)`` and ``duplicate_keys``), as it reads every key anyway;
- otherwise (libxml2 said something, or the C check cannot run here) ``validate_payt_xml`` (lxml, with
  ``pread``: the parent's file offset is untouched) locates every error, the repeated keys among them.
"""

from __future__ import annotations

import os
import pickle
import sys
from collections.abc import Sequence
from typing import IO, cast

from gateway.errors import RejectFile
from gateway.records import Problem
from parsers import schema_stream
from parsers.payt_xml_schema import PreadReader, stream_xsd, validate_payt_xml


def verdict(fd: int, offset: int) -> list[Problem]:
    """The file's schema problems (empty when valid); a DOCTYPE or XML that is not well-formed as well.

    Repeated keys are among them only when the file has other errors (see the module's docstring)."""
    if schema_stream.clean(fd, offset, stream_xsd()[0]):
        return []
    try:
        return validate_payt_xml(cast(IO[bytes], PreadReader(fd, offset)))
    except RejectFile as exc:
        return exc.problems


def main(argv: Sequence[str]) -> int:
    fd, offset = (int(a) for a in argv)
    problems = verdict(fd, offset)
    with os.fdopen(sys.stdout.fileno(), "wb", closefd=False) as out:
        pickle.dump(problems, out, pickle.HIGHEST_PROTOCOL)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
