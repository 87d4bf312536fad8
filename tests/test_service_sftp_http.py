"""Reload while an SFTP session (paramiko's client) stays connected; /healthz and /metrics content.

One daemon with SFTP and the HTTP endpoint on free loopback ports: accounts are added with the CLI, a
session is opened, the configuration is reloaded with a valid change (a new administration, a new SFTP
port, a new account for the new administration) and with an invalid one; the session keeps working
throughout. The endpoint is read before and after imports, failed logins and an overdue administration.
"""

from __future__ import annotations

import io
import signal
import time
from pathlib import Path

import paramiko
import pytest

from tests.service_support import GATEWAY_TABLE, free_port, get, healthz, http_port, metric, sighup
from tests.sftp_support import gateway, make_key, paramiko_client, start_daemon
from tests.test_e2e_daemon import INVALID, VALID, cli_json

pytestmark = pytest.mark.e2e
EVERY_HOUR = "[" + ", ".join(f'"{h:02d}:00"' for h in range(24)) + "]"


def config_text(sftp_port: int, admins: tuple[str, ...], extra: str = "") -> str:
    body = (
        GATEWAY_TABLE
        + f"""
[sftp]
enabled = true
bind = "127.0.0.1"
port = {sftp_port}
failure_delay = 0.05

[http]
port = 0
"""
    )
    for code in admins:
        body += f"""
[administrations.{code}]
name = "{code} B.V."
import_mode = "on_delivery"
[administrations.{code}.expected]
times = {EVERY_HOUR}
grace_minutes = 0
"""
    return body + extra


def upload(sftp: paramiko.SFTPClient, name: str, data: bytes) -> None:
    sftp.putfo(io.BytesIO(data), name, confirm=False)  # the gateway takes the file at once


def test_reload_keeps_sftp_session_and_endpoint_reports(tmp_path: Path) -> None:
    config = tmp_path / "gateway.toml"
    config.write_text(config_text(0, ("ACME", "LATE")), "utf-8")
    keys = {name: make_key(tmp_path, name) for name in ("acme", "gamma")}
    done = gateway(
        config, "sftp-user", "add", "acme", "--administration", "ACME", "--public-key", f"{keys['acme']}.pub"
    )
    assert done.returncode == 0, done.stderr
    d, port = start_daemon(config)
    client = sftp = None
    try:
        web = http_port(d)
        client, sftp = paramiko_client(port, "acme", key=keys["acme"])
        upload(sftp, "first.csv", VALID)
        d.wait_for(lambda: [e for e in d.events("file_processed") if e["file"] == "first.csv"])

        # -- /healthz: healthy, ACME delivered, LATE overdue (an expected import every hour, none ever)
        status, health = healthz(web)
        assert status == 200
        assert health["status"] == "degraded" and health["overdue"] == ["LATE"]
        assert health["database"] == {"reachable": True, "error": None}
        assert health["worker"]["alive"] and health["worker"]["progressing"]
        assert health["last_sweep"] is not None
        acme, late = health["administrations"]["ACME"], health["administrations"]["LATE"]
        run = cli_json(config, "imports")[0]
        assert acme["last_successful_import"] == run["finished_at"]
        assert acme["overdue"] is False and acme["next_deadline"] is not None
        assert late["overdue"] is True and late["last_successful_import"] is None
        assert len([e for e in d.events("import_overdue") if e["administration"] == "LATE"]) == 1

        # -- a failed login, then /metrics
        with pytest.raises(paramiko.AuthenticationException):
            paramiko_client(port, "acme", password="wrong")
        status, content_type, text = get(web, "/metrics")
        assert status == 200 and content_type.startswith("text/plain")
        assert metric(text, "payt_gateway_files_processed_total", administration="ACME", outcome="performed") == 1
        assert metric(text, "payt_gateway_rows_processed_total", administration="ACME") == 2
        assert metric(text, "payt_gateway_file_processing_seconds_count") == 1
        assert metric(text, "payt_gateway_sftp_sessions") == 1
        assert metric(text, "payt_gateway_sftp_auth_failures_total") == 1
        assert metric(text, "payt_gateway_import_overdue", administration="LATE") == 1
        assert metric(text, "payt_gateway_import_overdue", administration="ACME") == 0
        lag = metric(text, "payt_gateway_import_lag_seconds", administration="ACME")
        assert lag is not None and 0 <= lag < 120
        assert metric(text, "payt_gateway_import_lag_seconds", administration="LATE") is None
        assert metric(text, "payt_gateway_held_runs", administration="ACME") == 0
        assert metric(text, "payt_gateway_database_up") == 1

        # -- valid reload: a new administration GAMMA, a new SFTP port; an account for GAMMA
        new_port = free_port()
        config.write_text(config_text(new_port, ("ACME", "LATE", "GAMMA")), "utf-8")
        done = gateway(
            config, "sftp-user", "add", "gamma", "--administration", "GAMMA", "--public-key", f"{keys['gamma']}.pub"
        )
        assert done.returncode == 0, done.stderr
        sighup(d)
        d.wait_for(lambda: d.events("config_reloaded"))
        assert d.events("sftp_listening")[0]["port"] == new_port
        # the session opened before the reload is still there and still uploads
        upload(sftp, "second.csv", INVALID)
        d.wait_for(lambda: [e for e in d.events("file_processed") if e["file"] == "second.csv"])
        gamma_client, gamma_sftp = paramiko_client(new_port, "gamma", key=keys["gamma"])
        try:
            upload(gamma_sftp, "gamma.csv", VALID)
            event = d.wait_for(lambda: [e for e in d.events("file_processed") if e["file"] == "gamma.csv"])[0]
            assert event["administration"] == "GAMMA" and event["outcome"] == "performed"
        finally:
            gamma_sftp.close()
            gamma_client.close()
        # the old port no longer takes new connections
        with pytest.raises(OSError):
            paramiko_client(port, "acme", key=keys["acme"])

        # -- invalid reload: errors logged, nothing changes, the session stays
        config.write_text(config_text(new_port, ("ACME", "LATE", "GAMMA"), "[sftp_typo]\nx = 1\n"), "utf-8")
        sighup(d)
        d.wait_for(lambda: d.events("reload_failed"))
        assert [e["problem"] for e in d.events("config_error")] == ["sftp_typo: unknown key"]
        assert sftp.listdir(".") is not None
        upload(sftp, "third.csv", VALID)  # the same content as first.csv
        assert (
            d.wait_for(lambda: [e for e in d.events("file_processed") if e["file"] == "third.csv"])[0]["outcome"]
            == "duplicate"
        )
        assert not [e for e in d.events("sftp_logout") if e["account"] == "acme"], "the session was dropped"

        # -- the endpoint after the reloads: one overdue warning per lapse, counts from the database
        status, health = healthz(web)
        assert status == 200 and health["config"]["last_reload"]["ok"] is False
        assert set(health["administrations"]) == {"ACME", "LATE", "GAMMA"}
        assert len([e for e in d.events("import_overdue") if e["administration"] == "LATE"]) == 1
        text = get(web, "/metrics")[2]
        assert metric(text, "payt_gateway_files_processed_total", administration="ACME", outcome="duplicate") == 1
        assert metric(text, "payt_gateway_file_processing_seconds_count") == 4
        assert metric(text, "payt_gateway_sftp_sessions") == 1
        assert get(web, "/nothing")[0] == 404
    finally:
        for thing in (sftp, client):
            if thing is not None:
                thing.close()
        d.proc.send_signal(signal.SIGTERM)
        assert d.proc.wait(timeout=30) == 0
        time.sleep(0)
