"""Time one sender pass of N due invoices over SMTP, against a bare smtplib loop sending the same messages.

    python benchmarks/bench_send.py [--count 100000] [--database-url URL] [--keep]

1. A local SMTP server (aiosmtpd, in its own process so that it does not share the sender's interpreter)
   accepts everything on a loopback port and counts what it accepted.
2. A fresh data folder and database; N invoices (5 per debtor, each debtor with an e-mail address) are
   imported at 15:01 with ``ingest`` (not timed).
3. Timed: ``payt-gateway --now 16:30 send-due`` as a subprocess, end to end (start-up, scan, claim in
   batches, render, MIME, SMTP over one connection, the per-message ``sending``/``sent`` commits).
4. Timed: a bare smtplib loop over one connection sending N messages built in advance by the same
   MessageBuilder (building is not timed): the upper bound for the transport.

Targets (issue 5): the whole slot within 10 minutes, and >= 50 % of the bare smtplib rate.
Results: a table on stdout and ``benchmarks/results/send-<timestamp>.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import smtplib
import socket
import subprocess
import sys
import tempfile
import time
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
REPO_DIR = BENCH_DIR.parent
RESULTS_DIR = BENCH_DIR / "results"
TARGET_SECONDS = 600.0
TARGET_RATIO = 0.5

SERVER = r"""
import asyncio, signal, sys
from aiosmtpd.controller import Controller

class Count:
    n = 0
    async def handle_DATA(self, server, session, envelope):
        Count.n += 1
        return "250 OK"

c = Controller(Count(), hostname="127.0.0.1", port=int(sys.argv[1]))
c.start()
print("ready", flush=True)
try:
    for line in sys.stdin:
        print(Count.n, flush=True)
finally:
    c.stop()
"""

HEADER = (
    "debtor_code;debtor_company_name;debtor_email;debtor_language_code;debtor_post_street_1;"
    "debtor_post_postalcode;debtor_post_city;invoice_number;invoice_date;invoice_due_date;"
    "invoice_total_amount_inc_vat;invoice_open_amount_inc_vat;invoice_description\n"
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    """aiosmtpd in a child process; ``count()`` asks it how many messages it accepted."""

    def __init__(self) -> None:
        self.port = free_port()
        self.proc = subprocess.Popen(
            [sys.executable, "-c", SERVER, str(self.port)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None and self.proc.stdout.readline().strip() == "ready"

    def count(self) -> int:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write("?\n")
        self.proc.stdin.flush()
        return int(self.proc.stdout.readline())

    def stop(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait(timeout=30)


def write_csv(path: Path, count: int) -> None:
    with path.open("w", encoding="utf-8") as out:
        out.write(HEADER)
        for i in range(count):
            d = i // 5
            lang = "en" if d % 7 == 0 else "nl"
            out.write(
                f"D{d:07d};Klant {d} B.V.;debiteur{d}@example.org;{lang};Kerkstraat {d % 200 + 1};1234 AB;Utrecht;"
                f"F{i:08d};2026-03-04;2026-04-03;{i % 900 + 10}.50;{i % 900 + 10}.50;Levering {i}\n"
            )


def gateway(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gateway", "--config", str(config), "--json", *args],
        capture_output=True,
        text=True,
        check=False,
        cwd=REPO_DIR,
    )


def prepared_messages(count: int) -> list[tuple[str, bytes]]:
    sys.path.insert(0, str(REPO_DIR))
    from gateway.messages import MessageBuilder, MessageInput, make_salutation

    builder = MessageBuilder()
    out = []
    for i in range(count):
        d = i // 5
        lang = "en" if d % 7 == 0 else "nl"
        m = MessageInput(
            administration_code="BENCH",
            administration_name="Bench B.V.",
            from_address="facturen@bench.example",
            from_name="",
            kind="invoice",
            sequence=1,
            recipient=f"debiteur{d}@example.org",
            recipient_name=f"Klant {d} B.V.",
            language=lang,
            salutation=make_salutation(lang, None, None, None),
            number=f"F{i:08d}",
            invoice_date=date(2026, 3, 4),
            due_date=date(2026, 4, 3),
            amount_total_cents=(i % 900 + 10) * 100 + 50,
            amount_open_cents=(i % 900 + 10) * 100 + 50,
            currency="EUR",
            sent_at=datetime(2026, 3, 4, 15, 30, tzinfo=UTC),
            consumer=False,
            description=f"Levering {i}",
        )
        out.append((m.recipient, builder.build(m)))
    return out


def bare_smtplib(port: int, messages: list[tuple[str, bytes]]) -> float:
    started = time.perf_counter()
    conn = smtplib.SMTP("127.0.0.1", port, timeout=30)
    conn.ehlo()
    for recipient, data in messages:
        conn.sendmail("facturen@bench.example", [recipient], data)
    conn.quit()
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=100_000)
    parser.add_argument("--database-url", default="sqlite:///gateway.db")
    parser.add_argument("--keep", action="store_true", help="keep the data folder")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="bench-send-"))
    server = Server()
    try:
        config = folder / "gateway.toml"
        config.write_text(
            f'[gateway]\ndata_dir = "."\ndatabase_url = "{args.database_url}"\n'
            f'[sender]\ntransport = "smtp"\nfrom_address = "facturen@bench.example"\nsmtp_host = "127.0.0.1"\n'
            f"smtp_port = {server.port}\nsmtp_starttls = false\n"
            f'[administrations.BENCH]\nname = "Bench B.V."\n',
            "utf-8",
        )
        csv = folder / "open-items.csv"
        write_csv(csv, args.count)
        done = gateway(config, "--now", "2026-03-04T15:01", "ingest", str(csv), "--administration", "BENCH")
        assert done.returncode == 0, done.stderr[-2000:]

        started = time.perf_counter()
        done = gateway(config, "--now", "2026-03-04T16:30", "send-due")
        ours = time.perf_counter() - started
        assert done.returncode == 0, done.stderr[-2000:]
        report = json.loads(done.stdout)
        accepted = server.count()
        assert report["sent"] == args.count == accepted, (report, accepted)

        messages = prepared_messages(args.count)
        bare = bare_smtplib(server.port, messages)
        assert server.count() == 2 * args.count
        size = sum(len(m) for _, m in messages) / len(messages)
    finally:
        server.stop()
        if not args.keep:
            shutil.rmtree(folder, ignore_errors=True)
    result: dict[str, Any] = {
        "count": args.count,
        "database": args.database_url.split(":", 1)[0],
        "send_due_seconds": round(ours, 2),
        "send_due_messages_per_s": round(args.count / ours, 1),
        "bare_smtplib_seconds": round(bare, 2),
        "bare_smtplib_messages_per_s": round(args.count / bare, 1),
        "ratio": round(bare / ours, 3),
        "mean_message_bytes": round(size),
        "targets": {"slot_within_s": TARGET_SECONDS, "ratio_at_least": TARGET_RATIO},
        "met": {"slot": ours <= TARGET_SECONDS, "ratio": bare / ours >= TARGET_RATIO},
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(), "load": os.getloadavg()},
        "at": datetime.now(UTC).isoformat(),
    }
    RESULTS_DIR.mkdir(exist_ok=True)
    (RESULTS_DIR / f"send-{datetime.now(UTC):%Y%m%dT%H%M%S}.json").write_text(json.dumps(result, indent=2), "utf-8")
    print(f"{'messages':>10} {'send-due s':>11} {'msg/s':>8} {'bare s':>8} {'bare msg/s':>11} {'ratio':>6}")
    print(
        f"{args.count:>10} {ours:>11.1f} {args.count / ours:>8.0f} {bare:>8.1f} {args.count / bare:>11.0f} "
        f"{bare / ours:>6.2f}"
    )
    print(f"targets: slot <= {TARGET_SECONDS:.0f} s: {result['met']['slot']}; ratio >= {TARGET_RATIO}: "
          f"{result['met']['ratio']}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
