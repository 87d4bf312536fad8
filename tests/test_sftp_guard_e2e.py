"""The SFTP server's defences against a hostile network, end to end against ``payt-gateway run``: bans after
repeated failures (per address and per account), the session limit, and the idle timeout."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import paramiko
import pytest

from tests.sftp_support import gateway, make_key, paramiko_client, start_daemon, write_sftp_config
from tests.test_e2e_daemon import Daemon

pytestmark = pytest.mark.e2e
PASSWORD = "a long enough password"


@pytest.fixture(params=["max_failures = 3\nban_seconds = 300\n"])
def guarded(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[tuple[Daemon, int, Path]]:
    config = write_sftp_config(tmp_path, sftp=request.param, admins=("ACME",))
    key = make_key(tmp_path, "other")
    for name in ("victim", "other"):
        args = ["sftp-user", "add", name, "--administration", "ACME", "--password-stdin"]
        done = gateway(config, *args, *(["--public-key", f"{key}.pub"] if name == "other" else []), stdin=PASSWORD)
        assert done.returncode == 0, done.stderr
    daemon, port = start_daemon(config)
    try:
        yield daemon, port, key
    finally:
        assert daemon.stop() == 0


def test_repeated_failures_ban_the_address_and_the_account(guarded: tuple[Daemon, int, Path]) -> None:
    d, port, key = guarded
    for _ in range(3):
        with pytest.raises(paramiko.AuthenticationException):
            paramiko_client(port, "victim", password="wrong guess", source="127.0.0.2")
    banned = {e["who"] for e in d.events("sftp_banned")}
    assert banned == {"address 127.0.0.2", "account victim"}
    # the banned address is turned away before any SSH exchange
    with pytest.raises((paramiko.SSHException, EOFError, OSError)):
        paramiko_client(port, "other", key=key, source="127.0.0.2")
    refused = d.wait_for(lambda: d.events("sftp_connection_refused"))
    assert refused[0]["address"] == "127.0.0.2" and refused[0]["reason"] == "address banned"
    # the banned account is refused even with its right password, from any address
    with pytest.raises(paramiko.AuthenticationException):
        paramiko_client(port, "victim", password=PASSWORD, source="127.0.0.3")
    assert any(e["account"] == "victim" and e["reason"] == "account banned" for e in d.events("sftp_login_refused"))
    # everyone else is unaffected
    client, sftp = paramiko_client(port, "other", password=PASSWORD, source="127.0.0.3")
    assert sftp.listdir(".") == ["feedback"]
    client.close()


@pytest.mark.parametrize("guarded", ["idle_timeout = 3\nmax_sessions = 2\n"], indirect=True)
def test_session_limit_and_idle_timeout(guarded: tuple[Daemon, int, Path]) -> None:
    d, port, key = guarded
    first = paramiko_client(port, "other", key=key)
    second = paramiko_client(port, "other", password=PASSWORD)
    try:
        with pytest.raises((paramiko.SSHException, EOFError, OSError)):
            paramiko_client(port, "other", key=key)
        assert any("too many sessions" in e["reason"] for e in d.events("sftp_connection_refused"))
        second[0].close()
        d.wait_for(lambda: len(d.events("sftp_logout")) >= 1)
        third = paramiko_client(port, "other", key=key)
        third[1].listdir(".")
        third[0].close()
        # the first session has been idle; it is closed by the server
        time.sleep(4.5)
        transport = first[0].get_transport()
        assert transport is None or not transport.is_active()
        assert d.events("sftp_idle_timeout")
    finally:
        first[0].close()
        second[0].close()
