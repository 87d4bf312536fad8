"""How long the UBL 2.1 schemas take to compile (once per process) and a document to validate and read.

    .venv/bin/python benchmarks/bench_ubl.py [FILE.xml ...]

Without arguments: the test NLCIUS invoice and credit note (tests/data/ubl/). Each file is read (safe parse,
XSD validation, key fields) 200 times; the median and the slowest are printed.
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

from gateway.errors import RejectFile
from parsers.ubl import parse_ubl, ubl_schema

ROOT = Path(__file__).resolve().parents[1]
DEFAULT = [
    ROOT / "tests" / "data" / "ubl" / "invoice-2026-0042.xml",
    ROOT / "tests" / "data" / "ubl" / "credit-note-2026-0044.xml",
]
ROUNDS = 200


def main(paths: list[Path]) -> None:
    for schema in ("UBL-Invoice-2.1.xsd", "UBL-CreditNote-2.1.xsd"):
        started = time.perf_counter()
        ubl_schema(schema)
        print(f"compile {schema}: {(time.perf_counter() - started) * 1000:.0f} ms")
    for path in paths:
        data = path.read_bytes()
        times = []
        outcome = "valid"
        for _ in range(ROUNDS):
            started = time.perf_counter()
            try:
                parse_ubl(data)
            except RejectFile as exc:
                outcome = f"rejected ({len(exc.problems)} problems)"
            times.append(time.perf_counter() - started)
        print(
            f"{path.name}: {len(data) / 1024:.1f} KB, {outcome}, median {statistics.median(times) * 1000:.2f} ms, "
            f"max {max(times) * 1000:.2f} ms"
        )


if __name__ == "__main__":
    main([Path(a) for a in sys.argv[1:]] or DEFAULT)
