"""Crash injection, the long form: SIGKILL ``payt-gateway run`` N times (default 100) at random moments while
files arrive and sends are due; restart it each time; compare the end state with a crash-free run.

    python benchmarks/crash_inject.py [--kills 100] [--database sqlite|postgres] [--seed 1] [--invoices 2000]

What is checked (tests/crash_harness.py): the business tables equal the crash-free run's; every file performed
once and archived once; every message received by the SMTP server exactly once (unknown deliveries resolved
from what the server received, as an operator would). The short form (10 kills) runs in CI:
tests/test_crash_injection.py. Results: a line of JSON on stdout and benchmarks/results/crash-<time>.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.crash_harness import Plan, compare, crash_free, sqlite_url, with_kills  # noqa: E402
from tests.fleet import pg_schema  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kills", type=int, default=100)
    parser.add_argument("--database", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--invoices", type=int, default=2000, help="invoices whose messages are due")
    args = parser.parse_args()
    plan = Plan(preloaded_invoices=args.invoices, invoices_each=200, pdfs_each=50, copies=20)
    with tempfile.TemporaryDirectory(prefix="payt-crash-") as tmp:
        root = Path(tmp)
        if args.database == "sqlite":
            reference = crash_free(root / "ref", sqlite_url(root / "ref"), plan)
            outcome, crashed = with_kills(root / "crash", sqlite_url(root / "crash"), plan, args.kills, args.seed)
        else:
            with pg_schema() as url:
                reference = crash_free(root / "ref", url, plan)
            with pg_schema() as url:
                outcome, crashed = with_kills(root / "crash", url, plan, args.kills, args.seed)
    diffs = compare(reference[0], crashed[0])
    same_messages = set(reference[1]) == set(crashed[1]) and set(crashed[1].values()) == {1}
    result = outcome.as_dict() | {
        "database": args.database,
        "seed": args.seed,
        "state_equal": not diffs,
        "messages_once_and_same": same_messages,
        "differences": diffs,
    }
    print(json.dumps(result))
    out = REPO / "benchmarks" / "results"
    out.mkdir(exist_ok=True)
    (out / f"crash-{time.strftime('%Y%m%dT%H%M%S')}.json").write_text(json.dumps(result, indent=2) + "\n")
    return 0 if not diffs and same_messages else 1


if __name__ == "__main__":
    sys.exit(main())
