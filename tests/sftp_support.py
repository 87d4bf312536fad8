"""Helpers for the SFTP tests: a gateway folder with accounts, the daemon, and the two real clients."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import paramiko

from tests.test_e2e_daemon import Daemon

SFTP = "/usr/bin/sftp" if os.path.exists("/usr/bin/sftp") else "sftp"


def make_key(folder: Path, name: str, kind: str = "ed25519", bits: int | None = None) -> Path:
    """An OpenSSH key pair made by ssh-keygen: ``folder/name`` and ``folder/name.pub``."""
    path = folder / name
    args = ["ssh-keygen", "-q", "-t", kind, "-N", "", "-C", name, "-f", str(path)]
    if bits:
        args[4:4] = ["-b", str(bits)]
    subprocess.run(args, check=True, capture_output=True)
    return path


def write_sftp_config(root: Path, sftp: str = "", admins: tuple[str, ...] = ("ACME", "BETA"), extra: str = "") -> Path:
    body = f"""
[gateway]
data_dir = "."
database_url = "sqlite:///gateway.db"
settle_seconds = 0.3
sweep_seconds = 5

[sftp]
enabled = true
bind = "127.0.0.1"
port = 0
failure_delay = 0.05
{sftp}
"""
    for code in admins:
        body += f'\n[administrations.{code}]\nname = "{code} B.V."\nimport_mode = "on_delivery"\n'
    path = root / "gateway.toml"
    path.write_text(body + extra, "utf-8")
    return path


def gateway(config: Path, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gateway", "--config", str(config), *args],
        capture_output=True,
        text=True,
        input=stdin,
        timeout=60,
        check=False,
    )


def start_daemon(config: Path) -> tuple[Daemon, int]:
    d = Daemon(config)
    event = d.wait_for(lambda: d.events("sftp_started"), timeout=30)[0]
    return d, int(event["port"])


@dataclass
class OpenSsh:
    """The OpenSSH ``sftp`` client in batch mode."""

    port: int
    user: str
    key: Path | None
    workdir: Path
    source: str = "127.0.0.1"

    def command(self, batch: Path) -> list[str]:
        args = [SFTP, "-b", str(batch), "-P", str(self.port), "-o", "StrictHostKeyChecking=no"]
        args += ["-o", "UserKnownHostsFile=/dev/null", "-o", "BatchMode=yes", "-o", f"BindAddress={self.source}"]
        args += ["-o", "ConnectTimeout=10", "-o", "LogLevel=ERROR"]
        if self.key is not None:
            args += ["-i", str(self.key), "-o", "IdentitiesOnly=yes", "-o", "PreferredAuthentications=publickey"]
        return [*args, f"{self.user}@127.0.0.1"]

    def run(self, *commands: str) -> subprocess.CompletedProcess[str]:
        batch = self.workdir / f"batch-{os.getpid()}-{len(commands)}-{abs(hash(commands))}"
        batch.write_text("\n".join(commands) + "\n", "utf-8")
        return subprocess.run(
            self.command(batch), capture_output=True, text=True, timeout=60, check=False, cwd=self.workdir
        )


def paramiko_client(
    port: int, user: str, *, key: Path | None = None, password: str | None = None, source: str = "127.0.0.1"
) -> tuple[paramiko.SSHClient, paramiko.SFTPClient]:
    """Log in and open SFTP; ``source`` is the loopback address the connection comes from."""
    sock = socket.socket()
    sock.settimeout(10)
    sock.bind((source, 0))
    try:
        sock.connect(("127.0.0.1", port))
    except OSError:
        sock.close()
        raise
    client = paramiko.SSHClient()
    client.set_missing_host_key_policy(paramiko.AutoAddPolicy())
    pkey = paramiko.Ed25519Key.from_private_key_file(str(key)) if key else None
    client.connect(
        "127.0.0.1",
        port=port,
        username=user,
        pkey=pkey,
        password=password,
        allow_agent=False,
        look_for_keys=False,
        timeout=10,
        auth_timeout=10,
        banner_timeout=10,
        sock=sock,
    )
    sftp = client.open_sftp()
    return client, sftp
