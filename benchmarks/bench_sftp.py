"""Time uploads with the OpenSSH ``sftp`` client: the embedded server against the system OpenSSH server.

    python benchmarks/bench_sftp.py [--big-mb 200] [--small 1000] [--sessions 50] [--repeat 3] [--keep]

Targets (issue 4): the embedded server reaches >= 50 % of OpenSSH's MB/s on one large file and >= 60 % of
its files/s on many 2 KB files, and holds 50 concurrent sessions without errors.

Servers, each on a free loopback port with its own host key:
- ``gateway``: ``payt-gateway run`` with ``[sftp] enabled`` (the whole daemon: every uploaded file is also
  imported, as in production; the 2 KB files are valid open-items snapshots, so each is a real import);
- ``embedded``: the same SFTP server alone (``gateway.sftp_server.SftpServer`` without intake), for the
  protocol cost without the imports competing for the CPU;
- ``openssh``: ``/usr/sbin/sshd`` with ``Subsystem sftp internal-sftp``, when it is installed
  (``apt-get install openssh-server``); skipped otherwise.
The client is ``sftp -b`` with an ed25519 key; times include login. Each server is measured ``--repeat`` times
(a fresh server and folder each round, the servers' order rotated from round to round, ``sync`` before each
measurement so that one server's dirty pages are not written during another's), and the median is reported
with every round's figure. Results: a table on stdout and ``benchmarks/results/sftp-<timestamp>.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
SSHD = shutil.which("sshd") or ("/usr/sbin/sshd" if os.path.exists("/usr/sbin/sshd") else None)
HEADER = (
    "debiteurnummer;naam;adres;postcode;plaats;land;e-mail;factuurnummer;factuurdatum;vervaldatum;"
    "factuurbedrag;openstaand\n"
)

SERVER_ONLY = """
import signal, sys, threading
from datetime import UTC, datetime
from gateway.config import load_config
from gateway.logs import configure_logging
from gateway.sftp_server import SftpServer
from gateway.store import make_engine, migrate
configure_logging(sys.stderr)
config = load_config(sys.argv[1])
engine = make_engine(config.database_url)
migrate(engine)
server = SftpServer(config, engine, lambda: datetime.now(UTC))
server.start()
print(server.port, flush=True)
stop = threading.Event()
signal.signal(signal.SIGTERM, lambda *a: stop.set())
stop.wait()
server.stop()
"""


def small_csv(i: int) -> bytes:
    rows = []
    for j in range(14):
        n = i * 100 + j
        rows.append(
            f"{n};Klant {n} B.V.;Straat {j};1234 AB;Utrecht;NL;;F{n};2026-03-01;2026-03-31;{j + 1},00;{j + 1},00\n"
        )
    return (HEADER + "".join(rows)).encode()


def sftp_batch(port: int, user: str, key: Path, batch: Path, cwd: Path) -> float:
    args = ["sftp", "-q", "-b", str(batch), "-P", str(port), "-i", str(key), "-o", "IdentitiesOnly=yes"]
    args += ["-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR"]
    started = time.perf_counter()
    done = subprocess.run([*args, f"{user}@127.0.0.1"], cwd=cwd, capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"sftp failed: {done.stderr.strip()}")
    return elapsed


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def gateway_server(work: Path, key: Path, server_only: bool, round_: int) -> Iterator[tuple[int, str, str]]:
    root = work / f"{'embedded' if server_only else 'gateway'}-{round_}"
    root.mkdir()
    config = root / "gateway.toml"
    config.write_text(
        '[gateway]\ndata_dir = "."\n[sftp]\nenabled = true\nport = 0\nmax_sessions = 64\n'
        '[administrations.BENCH]\nname = "Bench"\nimport_mode = "on_delivery"\n',
        "utf-8",
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    add = [PYTHON, "-m", "gateway", "--config", str(config), "sftp-user", "add", "bench", "--administration", "BENCH"]
    subprocess.run([*add, "--public-key", f"{key}.pub"], check=True, env=env, capture_output=True)
    if server_only:
        proc = subprocess.Popen(
            [PYTHON, "-c", SERVER_ONLY, str(config)],
            stdout=subprocess.PIPE,
            text=True,
            env=env,
            stderr=subprocess.DEVNULL,
        )
        assert proc.stdout is not None
        port = int(proc.stdout.readline())
    else:
        proc = subprocess.Popen(
            [PYTHON, "-m", "gateway", "--config", str(config), "run"],
            stdout=subprocess.PIPE,
            text=True,
            env=env,
            cwd=root,
        )
        assert proc.stdout is not None
        port = 0
        for line in proc.stdout:
            if '"sftp_started"' in line:
                port = int(json.loads(line)["port"])
                break
        threading.Thread(target=lambda: [None for _ in proc.stdout], daemon=True).start()  # type: ignore[union-attr]
    try:
        yield port, "bench", "/"
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)


@contextmanager
def openssh_server(work: Path, key: Path, round_: int) -> Iterator[tuple[int, str, str]]:
    assert SSHD is not None
    root = work / f"openssh-{round_}"
    (root / "upload").mkdir(parents=True)
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(root / "host_key")], check=True)
    (root / "authorized_keys").write_text(Path(f"{key}.pub").read_text())
    os.chmod(root / "authorized_keys", 0o600)
    port = free_port()
    user = os.environ.get("USER") or subprocess.run(["id", "-un"], capture_output=True, text=True).stdout.strip()
    (root / "sshd_config").write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {root / 'host_key'}\nPidFile {root / 'sshd.pid'}\n"
        f"AuthorizedKeysFile {root / 'authorized_keys'}\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n"
        "UsePAM no\nStrictModes no\nPermitRootLogin prohibit-password\nMaxStartups 100\nMaxSessions 100\n"
        "Subsystem sftp internal-sftp\n"
    )
    os.makedirs("/run/sshd", exist_ok=True)
    proc = subprocess.Popen([SSHD, "-D", "-e", "-f", str(root / "sshd_config")], stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                break
        time.sleep(0.05)
    try:
        yield port, user, str(root / "upload")
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def concurrent_sessions(port: int, user: str, key: Path, folder: str, count: int) -> dict[str, Any]:
    """``count`` paramiko sessions opened at once, each uploads one file, all held open together."""
    import paramiko

    barrier = threading.Barrier(count + 1, timeout=120)
    errors: list[str] = []
    pkey = paramiko.Ed25519Key.from_private_key_file(str(key))

    def one(i: int) -> None:
        client = paramiko.SSHClient()
        client.set_missing_host_key_policy(paramiko.AutoAddPolicy())
        try:
            client.connect(
                "127.0.0.1",
                port=port,
                username=user,
                pkey=pkey,
                allow_agent=False,
                look_for_keys=False,
                timeout=60,
                banner_timeout=60,
                auth_timeout=60,
            )
            sftp = client.open_sftp()
            with sftp.open(f"{folder.rstrip('/')}/session-{i}.csv", "wb") as f:
                f.write(small_csv(100000 + i))
        except Exception as exc:
            errors.append(f"{type(exc).__name__}: {exc}")
        try:
            barrier.wait()  # everyone holds the session until all have uploaded
        finally:
            client.close()

    started = time.perf_counter()
    threads = [threading.Thread(target=one, args=(i,)) for i in range(count)]
    for t in threads:
        t.start()
    barrier.wait()
    held = time.perf_counter() - started
    for t in threads:
        t.join()
    return {"sessions": count, "errors": errors, "all_held_after_s": round(held, 2)}


def measure(
    server: Any, work: Path, key: Path, big: Path, small_dir: Path, args: argparse.Namespace, sessions: bool
) -> dict[str, Any]:
    with server as (port, user, folder):
        target = folder if folder != "/" else "."
        batch = work / f"batch-{time.monotonic_ns()}"
        batch.write_text(f"cd {target}\nput {big}\n")
        os.sync()
        big_s = sftp_batch(port, user, key, batch, work)
        lines = [f"cd {target}", f"lcd {small_dir}"] + [f"put f{i:05d}.csv" for i in range(args.small)]
        batch.write_text("\n".join(lines) + "\n")
        os.sync()
        small_s = sftp_batch(port, user, key, batch, work)
        held = concurrent_sessions(port, user, key, folder, args.sessions) if sessions else {}
    return {
        "mb_per_s": big.stat().st_size / 1e6 / big_s,
        "files_per_s": args.small / small_s,
        "load": os.getloadavg()[0],
        **held,
    }


def summarise(name: str, rounds: list[dict[str, Any]]) -> dict[str, Any]:
    mb = [r["mb_per_s"] for r in rounds]
    files = [r["files_per_s"] for r in rounds]
    sessions = next((r for r in rounds if "sessions" in r), {"sessions": 0, "errors": []})
    return {
        "server": name,
        "mb_per_s": round(statistics.median(mb), 1),
        "mb_per_s_rounds": [round(x, 1) for x in mb],
        "files_per_s": round(statistics.median(files), 1),
        "files_per_s_rounds": [round(x, 1) for x in files],
        "load_rounds": [round(r["load"], 1) for r in rounds],
        "sessions": sessions["sessions"],
        "errors": sessions["errors"],
        "all_held_after_s": sessions.get("all_held_after_s"),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--big-mb", type=int, default=200)
    parser.add_argument("--small", type=int, default=1000)
    parser.add_argument("--sessions", type=int, default=50)
    parser.add_argument("--repeat", type=int, default=3, help="rounds per server; the median is reported")
    parser.add_argument("--servers", nargs="*", help="only these (openssh, embedded, gateway)")
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-sftp-"))
    try:
        key = work / "client_key"
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
        big = work / "big.bin"
        with big.open("wb") as f:
            for _ in range(args.big_mb):
                f.write(os.urandom(1_000_000))
        small_dir = work / "small"
        small_dir.mkdir()
        for i in range(args.small):
            (small_dir / f"f{i:05d}.csv").write_bytes(small_csv(i))
        factories: dict[str, Any] = {
            "embedded": lambda r: gateway_server(work, key, True, r),
            "gateway": lambda r: gateway_server(work, key, False, r),
        }
        if SSHD:
            factories = {"openssh": lambda r: openssh_server(work, key, r), **factories}
        else:
            print("sshd not found: install openssh-server for the comparison", file=sys.stderr)
        names = [name for name in factories if not args.servers or name in args.servers]
        rounds: dict[str, list[dict[str, Any]]] = {name: [] for name in names}
        for round_ in range(args.repeat):
            order = names[round_ % len(names) :] + names[: round_ % len(names)]
            for name in order:
                result = measure(factories[name](round_), work, key, big, small_dir, args, sessions=round_ == 0)
                rounds[name].append(result)
                print(
                    f"round {round_ + 1} {name:9} {result['mb_per_s']:7.1f} MB/s {result['files_per_s']:7.1f} files/s"
                    f" (load {result['load']:.1f})",
                    file=sys.stderr,
                )
        results = [summarise(name, rounds[name]) for name in names]
        base = next((r for r in results if r["server"] == "openssh"), None)
        print("medians of the rounds:")
        print(f"{'server':10} {'MB/s':>7} {'ratio':>6} {'files/s':>8} {'ratio':>6} {'sessions':>9} {'errors':>6}")
        for r in results:
            mb_ratio = f"{r['mb_per_s'] / base['mb_per_s']:.0%}" if base else "-"
            f_ratio = f"{r['files_per_s'] / base['files_per_s']:.0%}" if base else "-"
            r["mb_ratio"], r["files_ratio"] = mb_ratio, f_ratio
            print(
                f"{r['server']:10} {r['mb_per_s']:7.1f} {mb_ratio:>6} {r['files_per_s']:8.1f} {f_ratio:>6} "
                f"{r['sessions']:9d} {len(r['errors']):6d}"
            )
        out = REPO / "benchmarks" / "results"
        out.mkdir(exist_ok=True)
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        load = os.getloadavg()
        (out / f"sftp-{stamp}.json").write_text(json.dumps({"results": results, "loadavg": load}, indent=2))
        print(f"load average during the run: {load[0]:.1f}")
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
