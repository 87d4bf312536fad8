"""The SFTP parts without a daemon: path confinement, the login guard, keys and passwords, settings, the host
key, the sftp-user commands, feedback expiry, and a pull that keeps the remote file (fetched once)."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from gateway.cli import main
from gateway.config import build_config
from gateway.errors import ConfigError
from gateway.feedback import expire_feedback, write_feedback
from gateway.sftp_accounts import add_account
from gateway.sftp_guard import LoginGuard
from gateway.sftp_keys import PublicKeyError, hash_password, parse_public_key, verify_password
from gateway.sftp_paths import Area, Place, resolve
from gateway.sftp_pull import Puller
from gateway.sftp_server import SftpServer, load_or_create_host_key
from gateway.store import make_engine, migrate, transaction
from tests.sftp_support import make_key
from tests.test_e2e_daemon import VALID

ONE = ["ACME"]
TWO = ["ACME", "BETA"]


@pytest.mark.parametrize(
    ("path", "codes", "expected"),
    [
        ("", ONE, Place(Area.UPLOADS, "ACME")),
        ("/../..", ONE, Place(Area.UPLOADS, "ACME")),
        ("../../etc/passwd", ONE, None),
        ("/etc/passwd", ONE, None),
        ("a.csv", ONE, Place(Area.UPLOADS, "ACME", "a.csv")),
        ("/x/../../a.csv", ONE, Place(Area.UPLOADS, "ACME", "a.csv")),
        ("feedback/a.csv.result.json", ONE, Place(Area.FEEDBACK, "ACME", "a.csv.result.json")),
        ("feedback/../../../a.csv", ONE, Place(Area.UPLOADS, "ACME", "a.csv")),
        (".payt-gateway-upload-0011", ONE, None),
        ("bad\nname.csv", ONE, None),
        ("x" * 256, ONE, None),
        ("/", TWO, Place(Area.ROOT)),
        ("BETA/b.csv", TWO, Place(Area.UPLOADS, "BETA", "b.csv")),
        ("GAMMA/b.csv", TWO, None),
        ("b.csv", TWO, None),
        ("feedback", TWO, Place(Area.FEEDBACK_ROOT)),
        ("feedback/BETA", TWO, Place(Area.FEEDBACK, "BETA")),
        ("feedback/GAMMA/x", TWO, None),
        ("ACME/sub/x.csv", TWO, None),
    ],
)
def test_paths_are_confined(path: str, codes: list[str], expected: Place | None) -> None:
    assert resolve(path, codes) == expected


def test_login_guard_bans_after_n_failures_in_the_window_and_forgets() -> None:
    guard = LoginGuard(max_failures=3, window=60, ban_seconds=100)
    assert guard.record_failure(["a"], 0) == []
    assert guard.record_failure(["a"], 70) == []  # the first one left the window
    assert guard.record_failure(["a"], 71) == []
    assert guard.record_failure(["a", "b"], 72) == ["a"]
    assert guard.banned("a", 100) and not guard.banned("b", 100)
    assert not guard.banned("a", 172.5)
    guard.record_success(["b"])
    assert guard.record_failure(["b"], 200) == []  # a success wiped b's count
    guard.prune(1000)
    assert not guard._failures and not guard._banned_until


@pytest.mark.parametrize(
    ("kind", "bits", "accepted"), [("ed25519", None, True), ("ecdsa", 384, True), ("rsa", 2048, False)]
)
def test_key_types(tmp_path: Path, kind: str, bits: int | None, accepted: bool) -> None:
    path = make_key(tmp_path, "k", kind, bits)
    line = Path(f"{path}.pub").read_text()
    if not accepted:
        with pytest.raises(PublicKeyError, match="at least 3072"):
            parse_public_key(line)
        return
    key = parse_public_key(line)
    printed = subprocess.run(["ssh-keygen", "-lf", f"{path}.pub"], capture_output=True, text=True, check=True).stdout
    assert key.fingerprint == printed.split()[1] and key.comment == "k"


@pytest.mark.parametrize("line", ["ssh-dss AAAAB3NzaC1kc3MAAACBAP8=", "ssh-ed25519 not-base64!", "just text", ""])
def test_bad_keys(line: str) -> None:
    with pytest.raises(PublicKeyError):
        parse_public_key(line)


def test_password_hash_is_slow_salted_and_verifies() -> None:
    first, second = hash_password("a long password!"), hash_password("a long password!")
    assert first != second and first.startswith("$argon2id$")
    assert verify_password(first, "a long password!") and not verify_password(first, "a long password?")
    assert not verify_password(None, "a long password!")
    with pytest.raises(ValueError):
        hash_password("short")


def test_sftp_settings(tmp_path: Path) -> None:
    cfg = build_config({"sftp": {"port": 0, "max_file_bytes": 10}}, tmp_path, "file")
    assert not cfg.sftp.enabled and cfg.sftp.port == 0 and cfg.sftp.max_file_bytes == 10
    assert cfg.sftp.host_key == tmp_path.resolve() / "ssh_host_ed25519_key"
    assert build_config({}, tmp_path, "built-in default").sftp.enabled, "CONTRACT: the embedded default has SFTP"
    with pytest.raises(ConfigError) as caught:
        build_config(
            {
                "sftp": {"enabled": "yes", "prot": 22, "password": "x"},
                "administrations": {"A": {"pull": {"host": "h", "private_key": "x", "after": "shred"}}},
            },
            tmp_path,
            "file",
        )
    text = "\n".join(caught.value.problems)
    for expected in (
        "sftp.enabled: must be true or false",
        "sftp.prot: unknown key",
        "sftp.password: secrets do not belong",
        "administrations.A.pull.private_key: secrets do not belong",
        "administrations.A.pull.user: required",
        "administrations.A.pull.after: must be one of delete, move, keep",
        "administrations.A.pull: set fingerprint",
    ):
        assert expected in text, text


def test_host_key_generated_once_with_mode_0600(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "ssh_host_ed25519_key"
    first = load_or_create_host_key(path)
    assert path.stat().st_mode & 0o777 == 0o600
    assert load_or_create_host_key(path).asbytes() == first.asbytes()
    os.chmod(path, 0o644)
    with pytest.raises(ConfigError, match="readable by others"):
        load_or_create_host_key(path)


def test_sftp_user_commands(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The real CLI entry point, in this process (one subprocess per call costs seconds on a busy machine)."""
    config = tmp_path / "gateway.toml"
    config.write_text('[gateway]\ndata_dir = "."\n[administrations.ACME]\n[administrations.BETA]\n', "utf-8")
    old, new, weak = make_key(tmp_path, "old"), make_key(tmp_path, "new"), make_key(tmp_path, "weak", "rsa", 2048)

    def run(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        monkeypatch.setattr(sys, "stdin", io.StringIO(stdin or ""))
        code = main(["--config", str(config), *args])
        out = capsys.readouterr()
        return subprocess.CompletedProcess(args, code, out.out, out.err)

    assert run("sftp-user", "add", "x", "--administration", "ACME", "--public-key", f"{weak}.pub").returncode == 1
    done = run("sftp-user", "add", "x", "--administration", "NOPE", "--public-key", f"{old}.pub")
    assert done.returncode == 78 and "NOPE" in done.stderr
    assert run("sftp-user", "add", "x", "--administration", "ACME").returncode == 1, "a key or a password is needed"
    args = ("sftp-user", "add", "x", "--administration", "ACME", "--administration", "BETA", "--public-key")
    assert run(*args, f"{old}.pub").returncode == 0
    assert run(*args, f"{old}.pub").returncode == 1, "exists already"
    old_fp = parse_public_key(Path(f"{old}.pub").read_text()).fingerprint
    assert run("sftp-user", "remove-key", "x", old_fp).returncode == 1, "never remove the last way in"
    assert run("sftp-user", "add-key", "x", "--public-key", f"{new}.pub").returncode == 0
    assert run("sftp-user", "remove-key", "x", old_fp).returncode == 0
    assert run("sftp-user", "set-password", "x", stdin="a very long password\n").returncode == 0
    assert run("sftp-user", "disable", "x").returncode == 0
    listed = json.loads(run("--json", "sftp-user", "list").stdout)
    assert listed == [
        {
            "name": "x",
            "administrations": ["ACME", "BETA"],
            "disabled": True,
            "password": True,
            "keys": [
                {
                    "type": "ssh-ed25519",
                    "bits": 256,
                    "fingerprint": parse_public_key(Path(f"{new}.pub").read_text()).fingerprint,
                    "comment": "new",
                }
            ],
        }
    ]
    assert "a very long password" not in config.read_text() + run("sftp-user", "list").stdout
    assert run("sftp-user", "remove", "x").returncode == 0
    assert json.loads(run("--json", "sftp-user", "list").stdout) == []
    assert run("sftp-user", "remove", "x").returncode == 1


def test_feedback_expires(tmp_path: Path) -> None:
    cfg = build_config({}, tmp_path, "file")
    run = {"run_id": 1, "administration": "ACME", "status": "duplicate", "file": "a.csv"}
    run["counts"] = {k: 0 for k in ("rows", "debtors_created", "debtors_updated", "invoices_created")}
    run["counts"].update({k: 0 for k in ("invoices_updated", "invoices_closed", "errors", "warnings")})
    path = write_feedback(cfg, "acct", "ACME", "a.csv", run)
    assert json.loads(path.read_text())["uploaded_file"] == "a.csv"
    assert "DUPLICATE" in path.with_name("a.csv.result.txt").read_text()
    assert expire_feedback(cfg, 3600) == 0
    old = path.stat().st_mtime - 7200
    os.utime(path, (old, old))
    assert expire_feedback(cfg, 3600) == 1 and not path.exists() and path.with_name("a.csv.result.txt").exists()


def test_pull_with_keep_fetches_each_file_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "r").mkdir()
    remote = build_config({"sftp": {"enabled": True, "port": 0}, "administrations": {"INT": {}}}, tmp_path / "r", "r")
    remote_engine = make_engine(remote.database_url)
    migrate(remote_engine)
    key = make_key(tmp_path, "pull")
    with transaction(remote_engine) as conn:
        add_account(
            conn, "export", ["INT"], [parse_public_key(Path(f"{key}.pub").read_text())], None, datetime.now(UTC)
        )
    (remote.inbox_dir / "INT").mkdir(parents=True)
    (remote.inbox_dir / "INT" / "a.csv").write_bytes(VALID)
    server = SftpServer(remote, remote_engine, lambda: datetime.now(UTC))
    server.start()
    try:
        host_line = f"[127.0.0.1]:{server.port} ssh-ed25519 "
        host_key = load_or_create_host_key(remote.sftp.host_key)
        (tmp_path / "known_hosts").write_text(host_line + host_key.get_base64() + "\n")
        pull = {"host": "127.0.0.1", "port": server.port, "user": "export", "remote_dir": "/"}
        pull |= {"known_hosts": "known_hosts", "after": "keep"}
        local = build_config({"administrations": {"L": {"pull": pull}}}, tmp_path, "local")
        engine = make_engine(local.database_url)
        migrate(engine)
        monkeypatch.setenv("PAYT_GATEWAY_L_PULL_KEY", key.read_text())
        puller = Puller(local, engine, lambda: datetime.now(UTC))
        admin = local.administrations["L"]
        assert puller.poll(admin) == 1
        assert (local.inbox_dir / "L" / "a.csv").read_bytes() == VALID
        assert (remote.inbox_dir / "INT" / "a.csv").exists(), "kept"
        assert puller.poll(admin) == 0, "remembered: not fetched twice"
        monkeypatch.setenv("PAYT_GATEWAY_L_PULL_KEY", make_key(tmp_path, "wrong").read_text())
        assert puller.poll(admin) == 0  # a refused login is logged, never raised
        engine.dispose()
    finally:
        server.stop()
        remote_engine.dispose()
