"""``connect`` and ``import-now`` through the real CLI (subprocesses) against fake vendors on loopback."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from gateway.config import build_config
from gateway.errors import ConfigError
from tests.connector_support import SECRET_KEY
from tests.fakes.base import RealClock
from tests.fakes.exact import FakeExact
from tests.fakes.moneybird import FakeMoneybird

pytestmark = pytest.mark.e2e


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def fakes() -> Iterator[tuple[FakeExact, FakeMoneybird]]:
    with FakeExact(RealClock()) as exact, FakeMoneybird(RealClock()) as moneybird:
        account = exact.add_account("42", "Klant B.V.")
        exact.add_invoice(account, 1001, 121.0)
        contact = moneybird.add_contact("7", "Mb Klant B.V.")
        moneybird.add_invoice(contact, "2026-001", "60.50")
        yield exact, moneybird


@pytest.fixture
def setup(tmp_path: Path, fakes: tuple[FakeExact, FakeMoneybird]) -> tuple[Path, dict[str, str]]:
    exact, moneybird = fakes
    config = tmp_path / "gateway.toml"
    config.write_text(
        f"""
[gateway]
data_dir = "."
database_url = "sqlite:///gateway.db"

[administrations.EX]
name = "Exact klant"
source = "exact_online"
import_mode = "off"
[administrations.EX.connector]
base_url = "{exact.base_url}"
division = {exact.division}
client_id = "exact-client"
redirect_uri = "http://127.0.0.1:{free_port()}/callback"

[administrations.MB]
name = "Moneybird klant"
source = "moneybird"
[administrations.MB.connector]
base_url = "{moneybird.base_url}/api/v2"
administration_id = "{moneybird.administration_id}"
""",
        "utf-8",
    )
    credentials = tmp_path / "credentials"
    credentials.mkdir()
    (credentials / "EX_CLIENT_SECRET").write_text("exact-secret\n")
    env = {
        **os.environ,
        "CREDENTIALS_DIRECTORY": str(credentials),
        "PAYT_GATEWAY_SECRET_KEY": SECRET_KEY,
        "PAYT_GATEWAY_MB_TOKEN": "personal-token",
    }
    return config, env


def gateway(config: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "gateway", "--config", str(config), *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=60, env=env, check=False)


def test_connect_through_the_loopback_redirect_then_import_now(
    setup: tuple[Path, dict[str, str]], fakes: tuple[FakeExact, FakeMoneybird]
) -> None:
    config, env = setup
    exact, _ = fakes
    proc = subprocess.Popen(
        [sys.executable, "-m", "gateway", "--config", str(config), "connect", "EX", "--timeout", "30"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert proc.stderr is not None
        url = ""
        while not url:
            line = proc.stderr.readline()
            assert line, "connect ended without printing the authorisation URL"
            if line.strip().startswith("http"):
                url = line.strip()
        assert url.startswith(f"{exact.base_url}/api/oauth2/auth?") and "client_id=exact-client" in url
        while "Waiting for the redirect" not in proc.stderr.readline():
            pass
        location = httpx.get(url, follow_redirects=False).headers["location"]  # the browser, consenting
        assert "%21" in location  # Exact's code carries a '!', URL-encoded
        answer = httpx.get(location)
        assert answer.status_code == 200 and "authorised" in answer.text
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    assert "Fake Gebruiker" in out
    assert "exact-secret" not in out + err  # secrets never printed

    done = gateway(config, env, "--json", "import-now", "EX")
    assert done.returncode == 0, done.stderr
    run = json.loads(done.stdout)
    assert (run["status"], run["source"], run["trigger"]) == ("performed", "exact_online", "manual")
    assert run["counts"]["invoices_created"] == 1
    tokens = [r for r in exact.log if r.path == "/api/oauth2/token"]
    assert [r.form()["grant_type"] for r in tokens] == ["authorization_code"]


def test_connect_checks_a_personal_token_and_import_now_reports_failure(
    setup: tuple[Path, dict[str, str]], fakes: tuple[FakeExact, FakeMoneybird]
) -> None:
    config, env = setup
    done = gateway(config, env, "connect", "MB")
    assert done.returncode == 0, done.stderr
    assert "Fake B.V." in done.stdout
    assert gateway(config, env, "import-now", "MB").returncode == 0
    bad = gateway(config, {**env, "PAYT_GATEWAY_MB_TOKEN": "wrong"}, "--json", "import-now", "MB")
    assert bad.returncode == 1
    run = json.loads(bad.stdout)
    assert run["status"] == "failed" and "token is invalid" in run["reason"]
    assert "wrong" not in run["reason"]
    missing = gateway(config, {k: v for k, v in env.items() if k != "PAYT_GATEWAY_MB_TOKEN"}, "connect", "MB")
    assert missing.returncode == 1 and "PAYT_GATEWAY_MB_TOKEN" in missing.stderr


@pytest.mark.parametrize(
    ("connector", "message"),
    [
        ({"administration_id": "1", "colour": "red"}, "administrations.X.connector.colour: unknown key"),
        ({}, "administrations.X.connector.administration_id: required for Moneybird"),
        ({"administration_id": "1", "base_url": "ftp://x"}, "must be an http(s) URL"),
        ({"administration_id": "1", "token": "abc"}, "secrets do not belong in the configuration file"),
        ({"administration_id": "1", "per_page": "many"}, "must be a positive whole number"),
        ({"administration_id": "1", "documents_per_poll": -1}, "documents_per_poll: must be a whole number, 0 or more"),
    ],
)
def test_connector_settings_are_validated_per_vendor(connector: dict[str, object], message: str) -> None:
    data = {"administrations": {"X": {"name": "X", "source": "moneybird", "connector": connector}}}
    with pytest.raises(ConfigError) as caught:
        build_config(data, Path("."), "test")
    assert any(message in p for p in caught.value.problems), caught.value.problems


def test_an_api_source_cannot_be_on_delivery() -> None:
    data = {
        "administrations": {
            "X": {
                "name": "X",
                "source": "moneybird",
                "import_mode": "on_delivery",
                "connector": {"administration_id": "1"},
            }
        }
    }
    with pytest.raises(ConfigError) as caught:
        build_config(data, Path("."), "test")
    assert any("import_mode" in p for p in caught.value.problems)
