"""The systemd files: `systemd-analyze verify`, the security rating, the sysusers file, and the settings the
gateway relies on to work under the hardening (a writable data folder, network sockets for SFTP)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

from tests.test_e2e_daemon import cli

ROOT = Path(__file__).resolve().parent.parent
UNIT = ROOT / "systemd" / "payt-gateway.service"
SYSUSERS = ROOT / "systemd" / "payt-gateway.sysusers"
EXAMPLE = ROOT / "systemd" / "gateway.toml.example"
ANALYZE = shutil.which("systemd-analyze") or "/usr/bin/systemd-analyze"
INSTALLED_EXEC = "/opt/payt-gateway/.venv/bin/payt-gateway"


def directives(text: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for line in text.splitlines():
        if "=" in line and not line.lstrip().startswith(("#", "[")):
            key, _, value = line.partition("=")
            out.setdefault(key.strip(), []).append(value.strip())
    return out


def test_verify_passes_with_the_installed_command(tmp_path: Path) -> None:
    """verify checks that ExecStart exists: the unit is checked as it is, with only the install path of the
    console script pointed at this environment's real one (the same entry point the unit would run)."""
    text = UNIT.read_text("utf-8")
    assert text.count(f"ExecStart={INSTALLED_EXEC} run") == 1
    here = Path(sys.executable).parent / "payt-gateway"
    assert here.is_file()
    unit = tmp_path / UNIT.name
    unit.write_text(text.replace(INSTALLED_EXEC, str(here)), "utf-8")
    done = subprocess.run([ANALYZE, "verify", str(unit)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stderr.strip() == "", done.stderr  # no warnings either


def test_security_exposure_is_at_most_2() -> None:
    done = subprocess.run(
        [ANALYZE, "security", "--offline=true", str(UNIT)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    found = re.search(r"Overall exposure level for payt-gateway\.service: (\d+\.\d+)", done.stdout)
    assert found, done.stdout
    assert float(found.group(1)) <= 2.0


def test_service_contract_settings() -> None:
    d = directives(UNIT.read_text("utf-8"))
    assert d["Type"] == ["notify"] and d["NotifyAccess"] == ["main"]
    assert d["Restart"] == ["on-failure"] and d["RestartPreventExitStatus"] == ["78"]
    assert d["ExecReload"] == ["/bin/kill -HUP $MAINPID"]
    watchdog = int(d["WatchdogSec"][0])
    assert watchdog >= 30  # the gateway pings every half interval from its main loop
    # the graceful stop: worker join (30 s) + pull/SFTP/HTTP shutdown + sender (60 s) stays below it
    assert int(d["TimeoutStopSec"][0]) >= 150
    assert d["User"] == ["payt-gateway"] and d["Group"] == ["payt-gateway"]
    assert d["LoadCredential"] == ["SECRET_KEY:/etc/payt-gateway/credentials/SECRET_KEY"]


def test_hardening_leaves_what_the_gateway_needs() -> None:
    """ProtectSystem=strict makes everything read-only except the StateDirectory (the data_dir of the example
    configuration); SFTP, PostgreSQL, SMTP and the vendors need AF_INET/AF_INET6 and AF_UNIX (PostgreSQL's
    socket, the notify socket); no IP filter, no private network; the default SFTP port needs no capability."""
    d = directives(UNIT.read_text("utf-8"))
    assert d["ProtectSystem"] == ["strict"]
    assert d["StateDirectory"] == ["payt-gateway"] and d["WorkingDirectory"] == ["/var/lib/payt-gateway"]
    assert set(d["RestrictAddressFamilies"][0].split()) == {"AF_UNIX", "AF_INET", "AF_INET6"}
    for absent in ("PrivateNetwork", "IPAddressDeny", "IPAddressAllow", "ReadOnlyPaths", "InaccessiblePaths"):
        assert absent not in d
    example = EXAMPLE.read_text("utf-8")
    assert 'data_dir = "/var/lib/payt-gateway"' in example
    port = int(re.search(r"^port = (\d+)", example.split("[sftp]")[1], re.M).group(1))  # type: ignore[union-attr]
    assert port >= 1024 and d["CapabilityBoundingSet"] == [""]


def test_example_configuration_is_valid(tmp_path: Path) -> None:
    done = cli(EXAMPLE, "--json", "check-config")
    assert done.returncode == 0, done.stderr
    assert '"valid": true' in done.stdout


def test_sysusers_creates_a_system_user_without_login(tmp_path: Path) -> None:
    (tmp_path / "etc").mkdir()
    assert shutil.which("systemd-sysusers"), "systemd-sysusers is required for this test"
    done = subprocess.run(
        ["systemd-sysusers", f"--root={tmp_path}", str(SYSUSERS)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    passwd = (tmp_path / "etc" / "passwd").read_text("utf-8")
    entry = next(line for line in passwd.splitlines() if line.startswith("payt-gateway:"))
    _name, _x, uid, _gid, _gecos, home, shell = entry.split(":")
    assert int(uid) < 1000 and home == "/var/lib/payt-gateway" and shell == "/usr/sbin/nologin"
    assert "payt-gateway:x:" in (tmp_path / "etc" / "group").read_text("utf-8")
