"""The embedded SFTP server end to end: ``payt-gateway run`` as a subprocess, the real OpenSSH ``sftp``
client in batch mode and paramiko's client; uploads are imported and answered in ``feedback/``."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paramiko
import pytest

from tests.sftp_support import OpenSsh, gateway, make_key, paramiko_client, start_daemon, write_sftp_config
from tests.test_e2e_daemon import INVALID, VALID, Daemon, cli_json, csv_rows

pytestmark = pytest.mark.e2e
PASSWORD = "correct horse battery staple"


@dataclass
class Gw:
    root: Path
    config: Path
    daemon: Daemon
    port: int
    keys: dict[str, Path]

    def client(self, user: str, key: str | None = None, source: str = "127.0.0.1") -> OpenSsh:
        return OpenSsh(self.port, user, self.keys.get(key or user), self.root, source)

    def imported(self, administration: str, name: str) -> dict[str, Any]:
        """The run of an uploaded file, once processed (as ``imports --json`` shows it)."""
        d = self.daemon
        d.wait_for(
            lambda: [
                e for e in d.events("file_processed") if (e["administration"], e["file"]) == (administration, name)
            ]
        )
        runs = cli_json(self.config, "imports", "--administration", administration)
        return next(r for r in runs if r["file"] == name)

    def feedback(self, account: str, code: str, name: str) -> dict[str, Any]:
        path = self.root / "sftp" / "feedback" / account / code / f"{name}.result.json"
        self.daemon.wait_for(path.exists, timeout=20)
        document: dict[str, Any] = json.loads(path.read_text("utf-8"))
        return document


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gw]:
    root = tmp_path_factory.mktemp("sftp-gw")
    config = write_sftp_config(root, sftp="max_file_bytes = 1048576\nquota_bytes = 3145728\n")
    keys = {name: make_key(root, name) for name in ("acme", "multi", "stranger")}
    keys["ecdsa"] = make_key(root, "ecdsa", "ecdsa", 256)
    done = gateway(
        config, "sftp-user", "add", "acme", "--administration", "ACME", "--public-key", f"{keys['acme']}.pub"
    )
    assert done.returncode == 0, done.stderr
    done = gateway(
        config,
        *("sftp-user", "add", "multi", "--administration", "ACME", "--administration", "BETA"),
        *("--public-key", f"{keys['multi']}.pub", "--public-key", f"{keys['ecdsa']}.pub", "--password-stdin"),
        stdin=PASSWORD + "\n",
    )
    assert done.returncode == 0, done.stderr
    assert (
        gateway(
            config, "sftp-user", "add", "beta", "--administration", "BETA", "--password-stdin", stdin=PASSWORD + "\n"
        ).returncode
        == 0
    )
    daemon, port = start_daemon(config)
    try:
        yield Gw(root, config, daemon, port, keys)
    finally:
        assert daemon.stop() == 0


def write(gw: Gw, name: str, data: bytes) -> Path:
    path = gw.root / name
    path.write_bytes(data)
    return path


def test_openssh_upload_is_imported_and_answered_in_feedback(gw: Gw) -> None:
    write(gw, "open-items.csv", VALID)
    write(gw, "bad.csv", b"this is not;a payt csv\n1;2\n")
    done = gw.client("acme").run("put open-items.csv", "put bad.csv", "ls -l")
    assert done.returncode == 0, done.stderr
    run = gw.imported("ACME", "open-items.csv")
    assert run["status"] == "performed" and run["counts"]["invoices_created"] == 2
    feedback = gw.feedback("acme", "ACME", "open-items.csv")
    assert feedback["status"] == "performed" and feedback["run_id"] == run["run_id"]
    assert feedback["counts"]["invoices_created"] == 2 and feedback["uploaded_file"] == "open-items.csv"
    rejected = gw.feedback("acme", "ACME", "bad.csv")
    assert rejected["status"] == "rejected" and rejected["errors"], rejected

    # The client reads its feedback through SFTP, in its read-only feedback/ folder.
    done = gw.client("acme").run(
        "ls feedback",
        "get feedback/bad.csv.result.txt got.txt",
        "-put open-items.csv feedback/x.csv",
        "-rm feedback/bad.csv.result.txt",
    )
    assert done.returncode == 0, done.stderr
    assert "open-items.csv.result.json" in done.stdout
    text = (gw.root / "got.txt").read_text("utf-8")
    assert text.startswith("bad.csv: REJECTED") and "errors (" in text
    assert (gw.root / "sftp/feedback/acme/ACME/bad.csv.result.txt").exists(), "feedback is read-only"
    assert not (gw.root / "sftp/feedback/acme/ACME/x.csv").exists()
    logins = [e for e in gw.daemon.events("sftp_login") if e["account"] == "acme"]
    assert logins and logins[0]["address"] == "127.0.0.1" and logins[0]["method"] == "publickey"
    uploads = [e for e in gw.daemon.events("sftp_upload_finished") if e["file"] == "open-items.csv"]
    assert uploads and uploads[0]["account"] == "acme" and uploads[0]["address"] == "127.0.0.1"


def test_paramiko_password_login_and_several_administrations(gw: Gw) -> None:
    client, sftp = paramiko_client(gw.port, "multi", password=PASSWORD)
    try:
        assert sorted(sftp.listdir("/")) == ["ACME", "BETA", "feedback"]
        beta = csv_rows("20001;Beta Klant;Weg 1;1111 AA;Ede;NL;;B-1;2026-03-01;2026-03-31;10,00;10,00")
        with sftp.open("BETA/beta-items.csv", "wb") as f:
            f.write(beta)
        # client-side atomic upload: a temporary name, then a rename into place
        with sftp.open("ACME/.acme.csv.part", "wb") as f:
            f.write(INVALID)
        sftp.rename("ACME/.acme.csv.part", "ACME/acme.csv")
    finally:
        client.close()
    assert gw.imported("BETA", "beta-items.csv")["status"] == "performed"
    assert gw.imported("ACME", "acme.csv")["counts"]["errors"] == 2
    assert gw.feedback("multi", "BETA", "beta-items.csv")["administration"] == "BETA"
    assert gw.feedback("multi", "ACME", "acme.csv")["counts"]["errors"] == 2
    client, sftp = paramiko_client(gw.port, "multi", password=PASSWORD)
    try:
        assert sorted(sftp.listdir("/feedback")) == ["ACME", "BETA"]
        assert "acme.csv.result.json" in sftp.listdir("/feedback/ACME")
    finally:
        client.close()
    # the ECDSA key of the same account works with OpenSSH
    done = gw.client("multi", "ecdsa").run("ls /")
    assert done.returncode == 0 and "BETA" in done.stdout, done.stderr


def test_posix_rename_overwrites(gw: Gw) -> None:
    write(gw, "pr.csv", INVALID)
    done = gw.client("acme").run("put pr.csv .pr1.part", "put pr.csv .pr2.part", "rename .pr1.part .pr2.part", "ls -la")
    assert done.returncode == 0, done.stderr  # OpenSSH uses posix-rename@openssh.com: the target is replaced
    names = os.listdir(gw.root / "inbox" / "ACME")
    assert ".pr2.part" in names and ".pr1.part" not in names
    done = gw.client("acme").run("rm .pr2.part")
    assert done.returncode == 0, done.stderr


def test_wrong_key_and_wrong_password_are_refused(gw: Gw) -> None:
    done = gw.client("acme", "stranger").run("ls")
    assert done.returncode != 0
    with pytest.raises(paramiko.AuthenticationException):
        paramiko_client(gw.port, "beta", password="not the password at all")
    with pytest.raises(paramiko.AuthenticationException):
        paramiko_client(gw.port, "nobody", password=PASSWORD)
    failed = gw.daemon.events("sftp_login_failed")
    assert any(e["account"] == "acme" and e["method"] == "publickey" for e in failed)
    assert any(e["account"] == "beta" and e["method"] == "password" for e in failed)
    assert not any(PASSWORD in line or "not the password" in line for line in gw.daemon.lines), "no secret in logs"


def test_escape_attempts_are_refused(gw: Gw) -> None:
    secret = gw.root / "outside-secret.txt"
    secret.write_text("secret", "utf-8")
    write(gw, "x.csv", INVALID)
    # A symlink placed in the account's folders by someone else (or swapped in) is never followed.
    inbox = gw.root / "inbox" / "ACME"
    os.symlink(secret, inbox / ".swapped")
    feedback = gw.root / "sftp" / "feedback" / "acme" / "ACME"
    feedback.mkdir(parents=True, exist_ok=True)
    os.symlink(secret, feedback / "swapped.result.json")
    done = gw.client("acme").run(
        "-get ../../gateway.db stolen1",
        "-get /outside-secret.txt stolen2",
        "-get ../outside-secret.txt stolen3",
        "-get .swapped stolen4",
        "-get feedback/swapped.result.json stolen5",
        "-ls ../..",
        "-put x.csv ../../escaped.csv.part",
        "-put x.csv .swapped",
        "put x.csv .mine.part",
        "-ln -s /etc/passwd link.part",
        "-symlink ../../gateway.db link2.part",
        "-ln .mine.part hard.part",
        "-chmod 4755 .mine.part",
        "-chmod 2755 .mine.part",
        "-chown 0 .mine.part",
        "chmod 644 .mine.part",
        "-mkdir sub",
        "ls -la",
    )
    assert done.returncode == 0, done.stderr
    for name in ("stolen1", "stolen2", "stolen3", "stolen4", "stolen5"):
        assert not (gw.root / name).exists(), name
    assert secret.read_text("utf-8") == "secret", "a write never goes through a symlink"
    assert not (gw.root / "escaped.csv.part").exists() and not (gw.root.parent / "escaped.csv.part").exists()
    assert (inbox / "escaped.csv.part").exists(), "'..' stops at the account's root"
    assert os.readlink(inbox / ".swapped") == str(secret), "an upload onto a symlink is refused"
    for name in ("link.part", "link2.part", "hard.part", "sub"):
        assert not os.path.lexists(inbox / name), name
    mode = (inbox / ".mine.part").stat().st_mode
    assert not mode & (stat.S_ISUID | stat.S_ISGID) and stat.S_IMODE(mode) == 0o640
    assert (inbox / ".mine.part").stat().st_uid == os.getuid()
    refused = {e["op"] for e in gw.daemon.events("sftp_refused") if e["account"] == "acme"}
    assert {"open", "symlink", "hardlink", "chmod", "chown", "mkdir"} <= refused, refused
    for name in (".mine.part", ".swapped", "escaped.csv.part"):
        (inbox / name).unlink()


def test_an_account_never_sees_another_administration(gw: Gw) -> None:
    client, sftp = paramiko_client(gw.port, "beta", password=PASSWORD)
    try:
        assert "ACME" not in sftp.listdir("/")
        for path in ("/ACME", "../ACME", "/feedback/ACME", "../acme/ACME", "../../sftp/feedback/acme/ACME"):
            with pytest.raises(OSError):
                sftp.listdir(path)
        with pytest.raises(OSError):
            sftp.open("/ACME/x.csv", "wb")
        with pytest.raises(OSError):
            sftp.open("../../gateway.toml", "rb")
        assert sftp.normalize("../../..") == "/"
    finally:
        client.close()


def test_no_shell_exec_scp_or_forwarding(gw: Gw) -> None:
    client, _sftp = paramiko_client(gw.port, "beta", password=PASSWORD)
    try:
        transport = client.get_transport()
        assert transport is not None
        for attempt in (
            lambda: client.exec_command("scp -t ."),
            lambda: client.exec_command("id"),
            lambda: client.invoke_shell(),
            lambda: transport.open_channel("direct-tcpip", ("127.0.0.1", gw.port), ("127.0.0.1", 0)),
        ):
            with pytest.raises(paramiko.SSHException):
                attempt()
        with pytest.raises(paramiko.SSHException):
            transport.request_port_forward("127.0.0.1", 0)
    finally:
        client.close()
    refused = {e["request"] for e in gw.daemon.events("sftp_request_refused")}
    assert {"exec", "direct_tcpip"} <= refused, refused
    assert any("scp" in e["detail"] for e in gw.daemon.events("sftp_request_refused"))


def test_size_limit_and_quota(gw: Gw) -> None:
    inbox = gw.root / "inbox" / "ACME"
    write(gw, "huge.csv", b"x" * (1024 * 1024 + 1))
    done = gw.client("acme").run("put huge.csv")
    assert done.returncode != 0
    assert not (inbox / "huge.csv").exists()
    assert not [n for n in os.listdir(inbox) if n.startswith(".payt-gateway")], "the partial upload is gone"
    # Temporary names are never imported: they hold the account's quota (3 MiB) until removed.
    write(gw, "mb.part", b"y" * 900_000)
    done = gw.client("acme").run("put mb.part .q1.part", "put mb.part .q2.part", "put mb.part .q3.part")
    assert done.returncode == 0, done.stderr
    time.sleep(2.5)  # the quota re-reads what is pending at most every two seconds
    done = gw.client("acme").run("put mb.part .q4.part")
    assert done.returncode != 0 and not (inbox / ".q4.part").exists()
    reasons = [e["reason"] for e in gw.daemon.events("sftp_upload_refused")]
    assert "size_limit" in reasons and "quota" in reasons
    done = gw.client("acme").run("rm .q1.part", "rm .q2.part", "rm .q3.part")
    assert done.returncode == 0, done.stderr
    time.sleep(2.5)
    done = gw.client("acme").run("put mb.part .q4.part", "rm .q4.part")
    assert done.returncode == 0, done.stderr


KILLED_CLIENT = """
import sys, time, paramiko
c = paramiko.SSHClient(); c.set_missing_host_key_policy(paramiko.AutoAddPolicy())
c.connect("127.0.0.1", port=int(sys.argv[1]), username="acme", key_filename=sys.argv[2],
          allow_agent=False, look_for_keys=False)
f = c.open_sftp().open("killed.csv", "wb")
f.write(sys.argv[3].encode() * 2000); f.flush()
print("written", flush=True)
time.sleep(60)
"""


def test_client_killed_mid_upload_leaves_nothing(gw: Gw) -> None:
    inbox = gw.root / "inbox" / "ACME"
    row = "30001;Half;Weg 1;1111 AA;Ede;NL;;H-1;2026-03-01;2026-03-31;10,00;10,00\n"
    proc = subprocess.Popen(
        [sys.executable, "-c", KILLED_CLIENT, str(gw.port), str(gw.keys["acme"]), row],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "written"
        assert [n for n in os.listdir(inbox) if n.startswith(".payt-gateway-upload-")], "the upload is in progress"
    finally:
        proc.kill()
        proc.wait()
    gw.daemon.wait_for(lambda: [e for e in gw.daemon.events("sftp_upload_aborted") if e["file"] == "killed.csv"])
    assert not [n for n in os.listdir(inbox) if n.startswith(".payt-gateway") or n == "killed.csv"]
    runs = cli_json(gw.config, "imports")
    assert not [r for r in runs if r["file"] == "killed.csv"]
