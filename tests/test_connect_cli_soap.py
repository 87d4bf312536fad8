"""``connect`` and ``import-now`` through the real CLI (subprocesses) against the fake SOAP vendors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.connector_support import SECRET_KEY
from tests.fakes.base import RealClock
from tests.fakes.eboekhouden import FakeEBoekhouden
from tests.fakes.twinfield import FakeTwinfield
from tests.test_connect_cli import free_port, gateway

pytestmark = pytest.mark.e2e


@pytest.fixture
def fakes() -> Iterator[tuple[FakeTwinfield, FakeEBoekhouden]]:
    with FakeTwinfield(RealClock()) as twinfield, FakeEBoekhouden(RealClock()) as eboekhouden:
        twinfield.add_debtor("1001", "Tw Klant B.V.")
        twinfield.add_invoice("1001", "2026-0042", "121.00")
        eboekhouden.add_relatie("R1", "Eb Klant B.V.")
        eboekhouden.add_invoice("R1", "F-7", "60.5")
        yield twinfield, eboekhouden


@pytest.fixture
def setup(tmp_path: Path, fakes: tuple[FakeTwinfield, FakeEBoekhouden]) -> tuple[Path, dict[str, str]]:
    twinfield, eboekhouden = fakes
    config = tmp_path / "gateway.toml"
    config.write_text(
        f"""
[gateway]
data_dir = "."
database_url = "sqlite:///gateway.db"

[administrations.TW]
name = "Twinfield klant"
source = "twinfield"
import_mode = "off"
[administrations.TW.connector]
login_url = "{twinfield.base_url}"
company_code = "{twinfield.company}"
client_id = "twf-client"
redirect_uri = "http://127.0.0.1:{free_port()}/callback"

[administrations.EB]
name = "e-Boekhouden klant"
source = "eboekhouden"
[administrations.EB.connector]
soap_url = "{eboekhouden.soap_url}"
username = "demo"
""",
        "utf-8",
    )
    credentials = tmp_path / "credentials"
    credentials.mkdir()
    (credentials / "TW_CLIENT_SECRET").write_text("twf-secret\n")
    (credentials / "EB_SECURITY_CODE_1").write_text("CODE1-abc\n")
    env = {
        **os.environ,
        "CREDENTIALS_DIRECTORY": str(credentials),
        "PAYT_GATEWAY_SECRET_KEY": SECRET_KEY,
        "PAYT_GATEWAY_EB_SECURITY_CODE_2": "CODE2-DEF",
    }
    return config, env


def test_twinfield_connect_through_the_loopback_redirect_then_import_now(
    setup: tuple[Path, dict[str, str]], fakes: tuple[FakeTwinfield, FakeEBoekhouden]
) -> None:
    config, env = setup
    twinfield, _ = fakes
    proc = subprocess.Popen(
        [sys.executable, "-m", "gateway", "--config", str(config), "connect", "TW", "--timeout", "30"],
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
        assert url.startswith(f"{twinfield.base_url}/auth/authentication/connect/authorize?")
        assert "nonce=" in url and "twf.organisationUser" in url
        while "Waiting for the redirect" not in proc.stderr.readline():
            pass
        location = httpx.get(url, follow_redirects=False).headers["location"]  # the browser, consenting
        answer = httpx.get(location)
        assert answer.status_code == 200 and "authorised" in answer.text
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    assert "FAKEORG" in out and "Fake Holding B.V." in out
    assert "twf-secret" not in out + err

    done = gateway(config, env, "--json", "import-now", "TW")
    assert done.returncode == 0, done.stderr
    run = json.loads(done.stdout)
    assert (run["status"], run["source"], run["trigger"]) == ("performed", "twinfield", "manual")
    assert run["counts"]["invoices_created"] == 1
    tokens = [r for r in twinfield.log if r.path.endswith("/connect/token")]
    assert [r.form()["grant_type"] for r in tokens] == ["authorization_code"]
    assert len([r for r in twinfield.log if r.path.endswith("/accesstokenvalidation")]) == 1


def test_eboekhouden_connect_checks_the_credentials_and_import_now_reports_failure(
    setup: tuple[Path, dict[str, str]], fakes: tuple[FakeTwinfield, FakeEBoekhouden]
) -> None:
    config, env = setup
    _, eboekhouden = fakes
    done = gateway(config, env, "connect", "EB")
    assert done.returncode == 0, done.stderr
    assert "accepted the credentials of user 'demo'" in done.stdout
    ok = gateway(config, env, "--json", "import-now", "EB")
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["counts"]["invoices_created"] == 1
    bad = gateway(config, {**env, "PAYT_GATEWAY_EB_SECURITY_CODE_2": "wrong-code"}, "--json", "import-now", "EB")
    assert bad.returncode == 1
    run = json.loads(bad.stdout)
    assert run["status"] == "failed" and "refused the credentials of user 'demo'" in run["reason"]
    assert "wrong-code" not in bad.stdout + bad.stderr and "CODE1-abc" not in bad.stdout + bad.stderr
    env_without = {k: v for k, v in env.items() if k != "PAYT_GATEWAY_EB_SECURITY_CODE_2"}
    missing = gateway(config, env_without, "connect", "EB")
    assert missing.returncode == 1 and "PAYT_GATEWAY_EB_SECURITY_CODE_2" in missing.stderr
    assert not eboekhouden.sessions  # every session opened was closed
