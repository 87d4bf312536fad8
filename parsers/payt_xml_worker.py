"""The validator process for a large payt-xml file: the schema pass beside the reading of the entries.

    python -m parsers.payt_xml_worker FD OFFSET

validates the file on the inherited descriptor FD from OFFSET (with ``pread``: the parent's file offset is
untouched) against the schema (``validate_payt_xml``: the streaming first pass, and the pass that locates
the errors only when there are any) and writes its verdict to stdout when it is done: the pickled list of
problems, empty when the file is valid. The parser (``parsers.payt_xml``) reads the entries without the
schema meanwhile, in its own process, and takes nothing before this verdict says the file is valid: the two
passes over the file run on two cores. Exit status 0 whatever the verdict; anything else is a failure of the
validator itself (its traceback on stderr).
"""

from __future__ import annotations

import os
import pickle
import sys
from collections.abc import Sequence
from typing import IO, cast

from gateway.errors import RejectFile
from gateway.records import Problem
from parsers.payt_xml_schema import PreadReader, validate_payt_xml


def verdict(source: IO[bytes]) -> list[Problem]:
    """The file's schema problems (empty when valid); a DOCTYPE or XML that is not well-formed as well."""
    try:
        return validate_payt_xml(source)
    except RejectFile as exc:
        return exc.problems


def main(argv: Sequence[str]) -> int:
    fd, offset = (int(a) for a in argv)
    problems = verdict(cast(IO[bytes], PreadReader(fd, offset)))
    with os.fdopen(sys.stdout.fileno(), "wb", closefd=False) as out:
        pickle.dump(problems, out, pickle.HIGHEST_PROTOCOL)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
