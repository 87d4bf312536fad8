"""The daemon under a real notify socket (as systemd runs it with Type=notify and WatchdogSec).

The worker is made stuck honestly: the test holds SQLite's write lock (BEGIN IMMEDIATE on the gateway's own
database file) while a file arrives, so the worker waits inside its import transaction, as it would behind
a hung database. No code of ours is replaced.
"""

from __future__ import annotations

import signal
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.service_support import GATEWAY_TABLE, NotifySocket, get, healthz, http_port, metric, sighup
from tests.test_e2e_daemon import INVALID, VALID, Daemon, cli, cli_json, drop_by_rename, processed

pytestmark = pytest.mark.e2e
WATCHDOG_USEC = 1_000_000  # pings every 0.5 s
STALL = 1.5


def write_config(root: Path, admins: tuple[str, ...] = ("ACME",), extra: str = "") -> Path:
    body = (
        GATEWAY_TABLE
        + f"""stall_seconds = {STALL}

[http]
port = 0
"""
    )
    for code in admins:
        body += f'\n[administrations.{code}]\nname = "{code} B.V."\nimport_mode = "on_delivery"\n'
    path = root / "gateway.toml"
    path.write_text(body + extra, "utf-8")
    return path


@pytest.fixture
def notify(tmp_path: Path) -> Iterator[NotifySocket]:
    sock = NotifySocket(tmp_path)
    yield sock
    sock.close()


def start(config: Path, notify: NotifySocket) -> Daemon:
    return Daemon(config, env=notify.env(WATCHDOG_USEC))


def finish(d: Daemon) -> None:
    if d.proc.poll() is None:
        d.proc.kill()
        d.proc.wait()


def test_ready_watchdog_stuck_worker_and_stopping(tmp_path: Path, notify: NotifySocket) -> None:
    d = start(write_config(tmp_path), notify)
    try:
        ready = notify.wait_for(d, "READY")
        assert ready["READY"] == "1"
        assert "1 administration(s)" in ready["STATUS"]
        assert d.events("inbox_watch_started") and d.events("gateway_started"), "READY before start-up finished"
        port = http_port(d)

        # healthy: pings every half interval
        since = time.monotonic()
        time.sleep(2.0)
        assert len(notify.received("WATCHDOG", since)) >= 3
        assert healthz(port)[0] == 200

        # stuck: the worker waits for the database lock the test holds
        before = len(d.events("watchdog_withheld"))  # a loaded machine may have paused the worker already
        lock = sqlite3.connect(tmp_path / "gateway.db", isolation_level=None, timeout=30)
        try:
            lock.execute("BEGIN IMMEDIATE")
            drop_by_rename(tmp_path / "inbox" / "ACME", "open-items.csv", VALID)
            d.wait_for(lambda: d.events("file_claimed"))
            withheld = d.wait_for(lambda: d.events("watchdog_withheld")[before:], timeout=STALL + 5)[0]
            assert withheld["seconds"] >= STALL
            quiet_from = time.monotonic()
            time.sleep(2.5)  # five ping intervals
            assert notify.received("WATCHDOG", quiet_from) == [], "pinged while the worker was stuck"
            status, document = healthz(port)
            assert status == 503
            assert document["worker"] == {
                **document["worker"],
                "alive": True,
                "progressing": False,
            }
            assert "the worker has made no progress (stuck)" in document["problems"]
            assert not processed(d, "open-items.csv")()
        finally:
            lock.execute("ROLLBACK")
            lock.close()

        # released: the file is imported and the pings resume
        resumed_from = time.monotonic()
        d.wait_for(processed(d, "open-items.csv"))
        notify.wait_for(d, "WATCHDOG", resumed_from, timeout=5)
        d.wait_for(lambda: len(d.events("watchdog_resumed")) == len(d.events("watchdog_withheld")))
        assert healthz(port)[0] == 200

        stop_sent = time.monotonic()
        d.proc.send_signal(signal.SIGTERM)
        assert d.proc.wait(timeout=30) == 0
        stopping = notify.received("STOPPING", stop_sent)
        assert stopping and stopping[0][1]["STOPPING"] == "1"
    finally:
        finish(d)


def test_reload_valid_then_invalid_configuration(tmp_path: Path, notify: NotifySocket) -> None:
    config = write_config(tmp_path)
    d = start(config, notify)
    try:
        notify.wait_for(d, "READY")

        # valid: a new administration with its inbox, applied between files
        write_config(tmp_path, admins=("ACME", "BETA"))
        sent = time.monotonic()
        sighup(d)
        reloading = notify.wait_for(d, "RELOADING", sent)
        assert reloading["RELOADING"] == "1"
        assert int(reloading["MONOTONIC_USEC"]) > 0
        ready_at, ready = d.wait_for(lambda: notify.received("READY", sent))[0]
        assert ready_at >= notify.received("RELOADING", sent)[0][0]
        assert "2 administration(s)" in ready["STATUS"]
        reloaded = d.wait_for(lambda: d.events("config_reloaded"))[0]
        assert d.wait_for(lambda: d.events("sender_reloaded"))[0]["administrations"] == ["ACME", "BETA"]
        assert reloaded["added"] == ["BETA"] and reloaded["removed"] == []
        assert (tmp_path / "inbox" / "BETA").is_dir()
        drop_by_rename(tmp_path / "inbox" / "BETA", "beta.csv", VALID)
        assert d.wait_for(processed(d, "beta.csv"))[0]["outcome"] == "performed"

        # invalid: every error is logged, the previous configuration stays
        config.write_text(
            config.read_text("utf-8").replace("stall_seconds = 1.5", "stall_seconds = 1.5\nsettle_secs = 1")
            + "\n[administrations.BETA.guards]\nmax_close_ratio = 2\n",
            "utf-8",
        )
        sent = time.monotonic()
        sighup(d)
        notify.wait_for(d, "RELOADING", sent)
        ready = d.wait_for(lambda: notify.received("READY", sent))[0][1]
        assert ready["STATUS"].startswith("reload failed (2 error(s))")
        errors = [e["problem"] for e in d.events("config_error")]
        assert any(p.startswith("gateway.settle_secs: unknown key") for p in errors)
        assert any(p.startswith("administrations.BETA.guards.max_close_ratio") for p in errors)
        assert len(errors) == 2
        assert d.events("reload_failed")[0]["errors"] == 2
        assert len(d.events("config_reloaded")) == 1
        drop_by_rename(tmp_path / "inbox" / "BETA", "beta-2.csv", INVALID)
        assert d.wait_for(processed(d, "beta-2.csv"))[0]["counts"]["errors"] == 2  # BETA is still configured

        sent = time.monotonic()
        d.proc.send_signal(signal.SIGTERM)
        assert d.proc.wait(timeout=30) == 0
        assert notify.received("STOPPING", sent)
    finally:
        finish(d)


def test_without_notify_socket_nothing_is_sent_and_the_daemon_runs(tmp_path: Path, notify: NotifySocket) -> None:
    d = Daemon(write_config(tmp_path), env={"WATCHDOG_USEC": str(WATCHDOG_USEC)})
    try:
        d.wait_for(lambda: d.events("gateway_started"))
        drop_by_rename(tmp_path / "inbox" / "ACME", "x.csv", VALID)
        d.wait_for(processed(d, "x.csv"))
        sighup(d)
        d.wait_for(lambda: d.events("config_reloaded"))
        d.proc.send_signal(signal.SIGTERM)
        assert d.proc.wait(timeout=30) == 0
        assert notify.messages == []
    finally:
        finish(d)


def test_ready_with_the_sender_running_and_sends_by_status(tmp_path: Path, notify: NotifySocket) -> None:
    """Deliveries made by the CLI's sender (a fixed --now), then the daemon: READY comes with the sender thread
    running, and /metrics counts the deliveries by status as `outbox --json` lists them (planned sends, which
    `outbox` computes and which are no delivery yet, are not counted)."""
    config = write_config(tmp_path)
    source = tmp_path / "open-items.csv"
    source.write_bytes(VALID)
    assert (
        cli(config, "--now", "2026-03-04T10:00:00+01:00", "ingest", str(source), "--administration", "ACME").returncode
        == 0
    )
    assert cli(config, "--now", "2026-03-04T12:00:00+01:00", "send-due").returncode == 0
    d = start(config, notify)
    try:
        notify.wait_for(d, "READY")
        port = http_port(d)
        assert healthz(port)[1]["threads"] == {"worker": True, "sender": True}
        d.wait_for(lambda: d.events("send_pass_finished"))  # the daemon's own catch-up pass
        expected: dict[str, int] = {}
        planned = 0
        for send in cli_json(config, "outbox"):
            if send["id"] is None:  # planned, not yet a delivery: computed by `outbox`, not counted
                planned += 1
                continue
            expected[send["status"]] = expected.get(send["status"], 0) + 1
        assert expected.get("sent", 0) >= 1 and planned >= 1
        text = get(port, "/metrics")[2]
        for status, count in expected.items():
            assert metric(text, "payt_gateway_sends", administration="ACME", status=status) == count
        samples = [line for line in text.splitlines() if line.startswith("payt_gateway_sends{")]
        assert len(samples) == len(expected)
        d.proc.send_signal(signal.SIGTERM)
        assert d.proc.wait(timeout=30) == 0
    finally:
        finish(d)
