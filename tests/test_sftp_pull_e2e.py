"""Remote pull end to end: ``payt-gateway run`` fetches from a second embedded SFTP server (in this test
process) that plays the intermediary's host; a changed host key is refused."""

from __future__ import annotations

import os
import socket
from datetime import UTC, datetime
from pathlib import Path

import pytest

from gateway.config import build_config
from gateway.sftp_accounts import add_account
from gateway.sftp_keys import fingerprint_of, parse_public_key
from gateway.sftp_server import SftpServer, load_or_create_host_key
from gateway.store import make_engine, migrate, transaction
from tests.sftp_support import make_key
from tests.test_e2e_daemon import VALID, Daemon, csv_rows

pytestmark = pytest.mark.e2e


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def remote_server(root: Path, port: int) -> SftpServer:
    """The intermediary's host: an embedded server whose account ``export`` reads from its inbox/INT/."""
    config = build_config(
        {"sftp": {"enabled": True, "port": port, "failure_delay": 0.0}, "administrations": {"INT": {}}},
        root,
        "remote",
    )
    engine = make_engine(config.database_url)
    migrate(engine)
    server = SftpServer(config, engine, lambda: datetime.now(UTC))
    server.start()
    return server


def test_pull_fetches_once_deletes_and_refuses_a_changed_host_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    remote_root = tmp_path / "remote"
    remote_inbox = remote_root / "inbox" / "INT"
    remote_inbox.mkdir(parents=True)
    key = make_key(tmp_path, "pull")
    engine = make_engine(f"sqlite:///{remote_root / 'gateway.db'}")
    migrate(engine)
    with transaction(engine) as conn:
        add_account(
            conn, "export", ["INT"], [parse_public_key((tmp_path / "pull.pub").read_text())], None, datetime.now(UTC)
        )
    engine.dispose()
    port = free_port()
    server = remote_server(remote_root, port)
    pinned = fingerprint_of(load_or_create_host_key(remote_root / "ssh_host_ed25519_key").asbytes())

    local = tmp_path / "local"
    local.mkdir()
    config = local / "gateway.toml"
    config.write_text(
        f"""
[gateway]
data_dir = "."
settle_seconds = 0.3

[administrations.PULLED]
name = "Pulled B.V."
import_mode = "on_delivery"

[administrations.PULLED.pull]
host = "127.0.0.1"
port = {port}
user = "export"
remote_dir = "/"
pattern = "*.csv"
poll_seconds = 1
fingerprint = "{pinned}"
after = "delete"
""",
        "utf-8",
    )
    monkeypatch.setenv("PAYT_GATEWAY_PULLED_PULL_KEY", key.read_text())
    (remote_inbox / "open-items.csv").write_bytes(VALID)
    (remote_inbox / "notes.txt").write_bytes(b"not matching the pattern")
    (remote_inbox / ".busy.csv.part").write_bytes(b"in progress")
    daemon = Daemon(config)
    try:
        event = daemon.wait_for(lambda: daemon.events("file_processed"), timeout=30)[0]
        assert (event["administration"], event["file"], event["outcome"]) == ("PULLED", "open-items.csv", "performed")
        daemon.wait_for(lambda: not (remote_inbox / "open-items.csv").exists())
        assert sorted(os.listdir(remote_inbox)) == [".busy.csv.part", "notes.txt"]
        fetched = daemon.events("pull_fetched")[0]
        assert fetched["size"] == len(VALID) and len(fetched["sha256"]) == 64

        # The intermediary's server comes back with another host key: refused, nothing fetched.
        server.stop()
        (remote_root / "ssh_host_ed25519_key").unlink()
        server = remote_server(remote_root, port)
        second = csv_rows("40001;Later;Weg 1;1111 AA;Ede;NL;;L-1;2026-03-01;2026-03-31;10,00;10,00")
        (remote_inbox / "later.csv").write_bytes(second)
        refused = daemon.wait_for(lambda: daemon.events("pull_host_key_refused"), timeout=30)[0]
        assert "is not the pinned" in refused["reason"]
        assert (remote_inbox / "later.csv").exists()
        assert [e["file"] for e in daemon.events("file_processed")] == ["open-items.csv"]
    finally:
        server.stop()
        assert daemon.stop() == 0
