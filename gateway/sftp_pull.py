"""Remote pull (issue 4 item 6): fetch files from an intermediary's own SFTP server into ``inbox/<CODE>/``.

Per administration with a ``[administrations.CODE.pull]`` table, every ``poll_seconds``: connect with strict
host-key checking (the pinned ``fingerprint`` or a ``known_hosts`` file; an unknown or changed key refuses
and logs), log in with the private key of credential ``PULL_KEY``, list ``remote_dir`` for names matching
``pattern``, and fetch each file not fetched before (remembered by name, size and mtime, with its SHA-256)
to a hidden temporary name in the inbox, renamed into place when complete; then delete or move the remote
file, or keep it. One thread for all administrations.
"""

from __future__ import annotations

import fnmatch
import hashlib
import io
import os
import secrets
import socket
import stat
import threading
import time
from collections.abc import Callable
from datetime import datetime

import paramiko
import sqlalchemy as sa
import structlog
from sqlalchemy.engine import Engine

from gateway.config import Administration, Config, PullSettings
from gateway.intake import is_temporary_name
from gateway.secrets import describe_secret, read_secret
from gateway.sftp_keys import fingerprint_of
from gateway.sftp_paths import INTERNAL_PREFIX, is_acceptable_name
from gateway.sftp_tables import sftp_pulled
from gateway.store import transaction

log = structlog.get_logger("gateway.pull")
KEY_CREDENTIAL = "PULL_KEY"
CHUNK = 256 * 1024


class PullError(Exception):
    """A poll that could not be done (unreachable, host key refused, login refused); retried next poll."""


def decide_host_key(offered: paramiko.PKey, host: str, port: int, pull: PullSettings) -> str | None:
    """None when the server's key is the pinned one; otherwise why it is refused."""
    offered_fp = fingerprint_of(offered.asbytes())
    if pull.fingerprint:
        return None if offered_fp == pull.fingerprint else f"host key {offered_fp} is not the pinned {pull.fingerprint}"
    assert pull.known_hosts is not None
    try:
        known = paramiko.HostKeys(str(pull.known_hosts))
    except OSError as exc:
        return f"known_hosts {pull.known_hosts} cannot be read: {exc.strerror}"
    entry = known.lookup(host if port == 22 else f"[{host}]:{port}")
    if not entry:
        return f"host {host}:{port} is not in {pull.known_hosts}"
    stored = entry.get(offered.get_name())
    if stored is None or stored.asbytes() != offered.asbytes():
        return f"host key {offered_fp} does not match {pull.known_hosts}"
    return None


def load_private_key(text: str) -> paramiko.PKey:
    for cls in (paramiko.Ed25519Key, paramiko.ECDSAKey, paramiko.RSAKey):
        try:
            return cls.from_private_key(io.StringIO(text))
        except (paramiko.SSHException, ValueError):
            continue
    raise PullError(f"credential {KEY_CREDENTIAL} is not an unencrypted ed25519, ECDSA or RSA private key")


class Puller:
    """Polls every administration that has a pull source, in one thread."""

    def __init__(self, config: Config, engine: Engine, clock: Callable[[], datetime]):
        self.config = config
        self.engine = engine
        self.clock = clock
        self.admins = [a for a in config.administrations.values() if a.pull is not None]
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="sftp-pull")

    def start(self) -> None:
        self._thread.start()
        log.info("pull_started", administrations=[a.code for a in self.admins])

    def stop(self) -> None:
        self._stopping.set()
        self._thread.join()

    def _loop(self) -> None:
        due = {a.code: 0.0 for a in self.admins}
        while not self._stopping.is_set():
            for admin in self.admins:
                assert admin.pull is not None
                if time.monotonic() >= due[admin.code] and not self._stopping.is_set():
                    self.poll(admin)
                    due[admin.code] = time.monotonic() + admin.pull.poll_seconds
            self._stopping.wait(max(0.05, min(due.values()) - time.monotonic()))

    def poll(self, admin: Administration) -> int:
        """One poll of ``admin``'s source; the number of files fetched. Never raises."""
        assert admin.pull is not None
        pull = admin.pull
        started = time.monotonic()
        try:
            fetched = self._poll(admin, pull)
        except PullError as exc:
            log.error("pull_failed", administration=admin.code, host=pull.host, port=pull.port, reason=str(exc))
            return 0
        except (paramiko.SSHException, OSError, EOFError) as exc:
            log.error(
                "pull_failed", administration=admin.code, host=pull.host, port=pull.port, reason=str(exc) or repr(exc)
            )
            return 0
        log.info(
            "poll_finished",
            administration=admin.code,
            source="sftp",
            fetched=fetched,
            duration_ms=round((time.monotonic() - started) * 1000, 1),
        )
        return fetched

    def _poll(self, admin: Administration, pull: PullSettings) -> int:
        secret = read_secret(KEY_CREDENTIAL, admin.code)
        if not secret:
            raise PullError(f"no private key: {describe_secret(KEY_CREDENTIAL, admin.code)}")
        key = load_private_key(secret + "\n")  # read_secret strips the PEM's final newline
        sock = socket.create_connection((pull.host, pull.port), timeout=pull.timeout_seconds)
        transport = paramiko.Transport(sock)
        try:
            transport.banner_timeout = transport.auth_timeout = pull.timeout_seconds
            transport.start_client(timeout=pull.timeout_seconds)
            refusal = decide_host_key(transport.get_remote_server_key(), pull.host, pull.port, pull)
            if refusal:
                log.error(
                    "pull_host_key_refused", administration=admin.code, host=pull.host, port=pull.port, reason=refusal
                )
                raise PullError(refusal)
            transport.auth_publickey(pull.user, key)
            client = paramiko.SFTPClient.from_transport(transport)
            assert client is not None
            client.get_channel().settimeout(pull.timeout_seconds)  # type: ignore[union-attr]
            with client:
                return self._fetch_all(admin, pull, client)
        finally:
            transport.close()

    def _fetch_all(self, admin: Administration, pull: PullSettings, client: paramiko.SFTPClient) -> int:
        fetched = 0
        for entry in sorted(client.listdir_attr(pull.remote_dir), key=lambda e: e.filename):
            name = entry.filename
            if self._stopping.is_set():
                break
            if not stat.S_ISREG(entry.st_mode or 0) or is_temporary_name(name) or not is_acceptable_name(name):
                continue
            if not fnmatch.fnmatchcase(name, pull.pattern):
                continue
            size, mtime = int(entry.st_size or 0), int(entry.st_mtime or 0)
            with transaction(self.engine, write=False) as conn:
                seen = conn.execute(
                    sa.select(sftp_pulled.c.id).where(
                        sftp_pulled.c.administration == admin.code,
                        sftp_pulled.c.remote_name == name,
                        sftp_pulled.c.size == size,
                        sftp_pulled.c.mtime == mtime,
                    )
                ).first()
            if seen is None:
                if not self._fetch(admin, pull, client, name, size, mtime):
                    continue
                fetched += 1
            self._after(admin, pull, client, name)
        return fetched

    def _fetch(
        self, admin: Administration, pull: PullSettings, client: paramiko.SFTPClient, name: str, size: int, mtime: int
    ) -> bool:
        remote = f"{pull.remote_dir.rstrip('/')}/{name}"
        folder = self.config.inbox_dir / admin.code
        folder.mkdir(parents=True, exist_ok=True)
        temp = folder / f"{INTERNAL_PREFIX}pull-{secrets.token_hex(8)}"
        sha = hashlib.sha256()
        try:
            fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o640)
            with os.fdopen(fd, "wb") as out, client.open(remote, "rb") as source:
                source.prefetch(size)
                while chunk := source.read(CHUNK):
                    sha.update(chunk)
                    out.write(chunk)
                out.flush()
                os.fsync(out.fileno())
            after = client.stat(remote)
            if (after.st_size, int(after.st_mtime or 0)) != (size, mtime):
                log.info("pull_file_changing", administration=admin.code, file=name)
                temp.unlink()
                return False
            with transaction(self.engine) as conn:
                conn.execute(
                    sa.insert(sftp_pulled).values(
                        administration=admin.code,
                        remote_name=name,
                        size=size,
                        mtime=mtime,
                        sha256=sha.hexdigest(),
                        fetched_at=self.clock(),
                    )
                )
                os.rename(temp, folder / name)
        except BaseException:
            temp.unlink(missing_ok=True)
            raise
        log.info(
            "pull_fetched", administration=admin.code, host=pull.host, file=name, size=size, sha256=sha.hexdigest()
        )
        return True

    def _after(self, admin: Administration, pull: PullSettings, client: paramiko.SFTPClient, name: str) -> None:
        remote = f"{pull.remote_dir.rstrip('/')}/{name}"
        if pull.after == "delete":
            client.remove(remote)
        elif pull.after == "move":
            client.posix_rename(remote, f"{pull.move_to.rstrip('/')}/{name}")
        else:
            return
        log.info("pull_remote_done", administration=admin.code, file=name, action=pull.after)
