"""Load: 1,000 files dropped at once, and 50 concurrent SFTP sessions uploading, on one and on three instances
sharing this machine's PostgreSQL (a fresh schema) and one data folder.

    python benchmarks/bench_load.py [--files 1000] [--sessions 50] [--uploads 4] [--instances 1 3]

Per run: throughput (files per second from the first arrival to the last run finished) and the latency from
arrival to `performed` (the run's finished_at; arrival = the moment the file was renamed into the inbox, or the
moment the SFTP client closed it) as p50, p95, p99 and max. Each file is a small open-items CSV (10 invoices) of
one of 50 administrations. Results: a table on stdout and benchmarks/results/load-<time>.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.fleet import Drop, Instance, codes, drop, open_items, pg_schema, query, write_config  # noqa: E402
from tests.sftp_support import make_key, paramiko_client  # noqa: E402

ADMINS = codes(50)


def items(count: int, prefix: str) -> list[Drop]:
    return [
        Drop(ADMINS[i % len(ADMINS)], f"{prefix}-{i:05d}.csv", open_items(ADMINS[i % len(ADMINS)], 10, start=i * 10))
        for i in range(count)
    ]


def percentiles(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    q = statistics.quantiles(ordered, n=100, method="inclusive") if len(ordered) > 1 else ordered * 99
    return {"p50": round(q[49], 3), "p95": round(q[94], 3), "p99": round(q[98], 3), "max": round(ordered[-1], 3)}


def finished_at(url: str, names: set[str]) -> dict[str, float]:
    rows = query(url, "SELECT file_name, status, finished_at FROM import_runs WHERE finished_at IS NOT NULL")
    out = {}
    for name, status, done in rows:
        if name in names:
            assert status == "performed", (name, status)
            moment = done if isinstance(done, datetime) else datetime.fromisoformat(str(done))
            out[name] = (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()
    return out


def wait_all(url: str, names: set[str], timeout: float = 1800) -> dict[str, float]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done = finished_at(url, names)
        if len(done) == len(names):
            return done
        time.sleep(0.5)
    raise SystemExit(f"timed out: {len(finished_at(url, names))} of {len(names)} processed")


def summary(arrivals: dict[str, float], done: dict[str, float]) -> dict[str, Any]:
    latencies = [done[n] - arrivals[n] for n in arrivals]
    span = max(done.values()) - min(arrivals.values())
    return {"files": len(arrivals), "seconds": round(span, 2), "files_per_s": round(len(arrivals) / span, 1)} | {
        "latency_s": percentiles(latencies)
    }


def fleet(root: Path, url: str, count: int, sftp: bool) -> tuple[list[Instance], Path]:
    data = root / "data"
    configs = [write_config(root / f"gw{i}", data, url, ADMINS, sftp=sftp, settle=0.5, sweep=5) for i in range(count)]
    return [Instance(c, f"gw{i}").started(120) for i, c in enumerate(configs)], data


def drop_at_once(root: Path, url: str, instances: int, files: int) -> dict[str, Any]:
    gateways, data = fleet(root, url, instances, sftp=False)
    try:
        batch = items(files, "dropped")
        arrivals = {}
        for item in batch:
            drop(data, item)
            arrivals[item.name] = time.time()
        return summary(arrivals, wait_all(url, set(arrivals)))
    finally:
        for g in gateways:
            g.stop()


def sftp_sessions(root: Path, url: str, instances: int, sessions: int, uploads: int) -> dict[str, Any]:
    """One account with an ed25519 key (a password's slow hash would make 50 logins the measurement)."""
    import subprocess

    config = write_config(root / "setup", root / "data", url, ADMINS)
    key = make_key(root, "loader")
    subprocess.run(
        [sys.executable, "-m", "gateway", "--config", str(config), "sftp-user", "add", "loader"]
        + [a for code in ADMINS for a in ("--administration", code)]
        + ["--public-key", f"{key}.pub"],
        text=True,
        check=True,
        capture_output=True,
    )
    gateways, _data = fleet(root, url, instances, sftp=True)
    ports = [int(g.events("sftp_started")[0]["port"]) for g in gateways]
    arrivals: dict[str, float] = {}
    lock = threading.Lock()
    errors: list[str] = []
    barrier = threading.Barrier(sessions)

    def session(number: int) -> None:
        try:
            client, sftp = paramiko_client(ports[number % len(ports)], "loader", key=key)
            barrier.wait(timeout=300)  # all 50 sessions are open, then they upload at once
            try:
                for k in range(uploads):
                    item = items(1, f"sftp-{number:03d}-{k}")[0]
                    code = ADMINS[(number * uploads + k) % len(ADMINS)]
                    data = open_items(code, 10, start=100_000 + (number * uploads + k) * 10)
                    with sftp.open(f"/{code}/{item.name}", "wb") as f:
                        f.write(data)
                    with lock:
                        arrivals[item.name] = time.time()
            finally:
                sftp.close()
                client.close()
        except Exception as exc:  # reported, and the run fails
            with lock:
                errors.append(f"session {number}: {exc!r}")

    try:
        threads = [threading.Thread(target=session, args=(n,)) for n in range(sessions)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if errors:
            raise SystemExit("\n".join(errors))
        return summary(arrivals, wait_all(url, set(arrivals)))
    finally:
        for g in gateways:
            g.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=1000)
    parser.add_argument("--sessions", type=int, default=50)
    parser.add_argument("--uploads", type=int, default=4, help="files per SFTP session")
    parser.add_argument("--instances", type=int, nargs="+", default=[1, 3])
    args = parser.parse_args()
    results: dict[str, Any] = {"machine": platform.platform(), "python": platform.python_version(), "runs": []}
    for n in args.instances:
        for kind in ("drop", "sftp"):
            with tempfile.TemporaryDirectory(prefix="payt-load-") as tmp, pg_schema() as url:
                if kind == "drop":
                    row = drop_at_once(Path(tmp), url, n, args.files)
                else:
                    row = sftp_sessions(Path(tmp), url, n, args.sessions, args.uploads)
            row = {"instances": n, "load": kind} | row
            results["runs"].append(row)
            lat = row["latency_s"]
            print(
                f"{n} instance(s) {kind:4}: {row['files']} files in {row['seconds']} s = {row['files_per_s']} files/s; "
                f"latency p50 {lat['p50']} s, p95 {lat['p95']} s, p99 {lat['p99']} s, max {lat['max']} s",
                flush=True,
            )
    out = REPO / "benchmarks" / "results"
    out.mkdir(exist_ok=True)
    (out / f"load-{time.strftime('%Y%m%dT%H%M%S')}.json").write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
