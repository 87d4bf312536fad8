"""The embedded SFTP server (issue 4): paramiko, one listener, a bounded pool of connection workers.

Threads are bounded: the accept loop, one maintenance thread (idle timeout, ban bookkeeping, feedback
expiry), and per connection a pool worker plus paramiko's transport thread and its SFTP subsystem thread; at
most ``[sftp] max_sessions`` connections are served at once, more are turned away at accept. Only the
``sftp`` subsystem of a ``session`` channel is offered: no shell, exec (so no SCP), pty, port or agent
forwarding. Logins: public keys from the database, or a password checked against an argon2 hash; every
failure costs ``failure_delay`` seconds and counts toward a ban of the address and of the account.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Any

import paramiko
import structlog
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from paramiko.common import AUTH_FAILED, AUTH_SUCCESSFUL, OPEN_FAILED_ADMINISTRATIVELY_PROHIBITED, OPEN_SUCCEEDED
from paramiko.message import Message
from paramiko.sftp import (
    CMD_CLOSE,
    CMD_EXTENDED,
    CMD_EXTENDED_REPLY,
    CMD_INIT,
    CMD_VERSION,
    SFTP_FAILURE,
    SFTP_OK,
    SFTP_OP_UNSUPPORTED,
    SFTPError,
)
from sqlalchemy.engine import Engine

from gateway.config import Config
from gateway.errors import ConfigError
from gateway.feedback import expire_feedback
from gateway.sftp_accounts import Account, load_account
from gateway.sftp_fs import GatewaySftp, Session, UploadHandle
from gateway.sftp_guard import LoginGuard, account_key, address_key
from gateway.sftp_keys import fingerprint_of, key_matches, verify_password
from gateway.sftp_ledger import UploadLedger
from gateway.sftp_socket import ReadAheadSocket
from gateway.store import transaction

log = structlog.get_logger("gateway.sftp")
MAX_MESSAGE = 256 * 1024  # the largest SFTP message we accept, as OpenSSH's sftp-server
WINDOW = 16 * 1024 * 1024
CHANNEL_PACKET = 256 * 1024 - 1024
CIPHERS = ("aes128-gcm@openssh.com", "aes256-gcm@openssh.com", "aes128-ctr", "aes256-ctr", "aes192-ctr")
MACS = ("hmac-sha2-256-etm@openssh.com", "hmac-sha2-512-etm@openssh.com", "hmac-sha2-256", "hmac-sha2-512")
EXTENSIONS = (
    ("posix-rename@openssh.com", "1"),
    ("limits@openssh.com", "1"),
    ("hardlink@openssh.com", "1"),
    ("fsync@openssh.com", "1"),
)


def load_or_create_host_key(path: Path) -> paramiko.Ed25519Key:
    """The server's ed25519 key: generated once (mode 0600, never overwritten), then read at every start."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        pem = Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()
        )
        # Written whole under a private name, then linked into place: instances starting together on one data
        # folder never read a half-written key, and the first link wins.
        temp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "wb") as out:
            os.fchmod(out.fileno(), 0o600)
            out.write(pem)
            out.flush()
            os.fsync(out.fileno())
        try:
            os.link(temp, path)
        except FileExistsError:
            pass  # another process made it first: use theirs
        else:
            log.info("sftp_host_key_generated", path=str(path))
        finally:
            temp.unlink(missing_ok=True)
    mode = path.stat().st_mode & 0o777
    if mode & 0o077:
        raise ConfigError([f"sftp.host_key: {path} is readable by others (mode {mode:o}); chmod 600 it"])
    try:
        return paramiko.Ed25519Key.from_private_key_file(str(path))
    except (paramiko.SSHException, OSError, ValueError) as exc:
        raise ConfigError([f"sftp.host_key: {path} is not a readable ed25519 private key: {exc}"]) from exc


_SftpSubsystem: Any = paramiko.SFTPServer  # its private protocol methods are not in the type stubs


class GatewaySFTPServer(_SftpSubsystem):  # type: ignore[misc]
    """paramiko's SFTP subsystem with the OpenSSH extensions clients use, a CLOSE that reports a failed
    commit, and a session end that aborts (never commits) uploads still open."""

    def _send_server_version(self) -> int:
        t, data = self._read_packet()
        if t != CMD_INIT:
            raise SFTPError("Incompatible sftp protocol")
        msg = Message()
        msg.add_int(3)
        for name, version in EXTENSIONS:
            msg.add_string(name)
            msg.add_string(version)
        self._send_packet(CMD_VERSION, msg)
        return int.from_bytes(data[:4], "big")

    def _process(self, t: int, request_number: int, msg: Message) -> None:
        self.server.session.touch()
        if t == CMD_CLOSE:
            handle = msg.get_binary()
            if handle in self.folder_table:
                del self.folder_table[handle]
                self._send_status(request_number, SFTP_OK)
            elif handle in self.file_table:
                closing = self.file_table.pop(handle)
                if isinstance(closing, UploadHandle):
                    self._send_status(request_number, closing.commit(), closing.failure)
                else:
                    closing.close()
                    self._send_status(request_number, SFTP_OK)
            else:
                self._send_status(request_number, SFTP_FAILURE, "Invalid handle")
            return
        if t == CMD_EXTENDED:
            self._extended(request_number, msg.get_text(), msg)
            return
        super()._process(t, request_number, msg)

    def _extended(self, request_number: int, tag: str, msg: Message) -> None:
        if tag == "limits@openssh.com":
            reply = Message()
            reply.add_int(request_number)
            for value in (MAX_MESSAGE, MAX_MESSAGE - 1024, MAX_MESSAGE - 1024, 64):
                reply.add_int64(value)
            self._send_packet(CMD_EXTENDED_REPLY, reply)
        elif tag == "posix-rename@openssh.com":
            old, new = msg.get_text(), msg.get_text()
            self._send_status(request_number, self.server.posix_rename(old, new))
        elif tag == "hardlink@openssh.com":
            old, new = msg.get_text(), msg.get_text()
            self._send_status(request_number, self.server.hardlink(old, new))
        elif tag == "fsync@openssh.com":
            handle = self.file_table.get(msg.get_binary())
            self._send_status(request_number, handle.fsync() if isinstance(handle, UploadHandle) else SFTP_FAILURE)
        else:
            self._send_status(request_number, SFTP_OP_UNSUPPORTED)

    def finish_subsystem(self) -> None:
        for handle in self.file_table.values():
            if isinstance(handle, UploadHandle):
                handle.abort("the session ended before the file was closed")
        super().finish_subsystem()


class Connection(paramiko.ServerInterface):
    """Authentication and channel policy of one connection; holds its ``Session`` once logged in."""

    def __init__(self, server: SftpServer, address: str):
        self.server = server
        self.address = address
        self.session: Session | None = None
        self.method = ""

    def get_allowed_auths(self, username: str) -> str:
        return "publickey,password"

    def check_auth_none(self, username: str) -> int:
        return AUTH_FAILED

    def check_auth_publickey(self, username: str, key: paramiko.PKey) -> int:
        account = self._account(username)
        if account is not None and any(key_matches(key, k.key_type, k.key_data) for k in account.keys):
            return self._success(account, "publickey", fingerprint_of(key.asbytes()))
        return self._failure(username, "publickey", f"key {fingerprint_of(key.asbytes())} not accepted")

    def check_auth_password(self, username: str, password: str) -> int:
        account = self._account(username)
        if verify_password(account.password_hash if account else None, password) and account is not None:
            return self._success(account, "password", None)
        return self._failure(username, "password", "wrong password")

    def _account(self, username: str) -> Account | None:
        if self.server.is_banned(account_key(username)):
            log.warning("sftp_login_refused", account=username, address=self.address, reason="account banned")
            return None
        with transaction(self.server.engine, write=False) as conn:
            account = load_account(conn, username)
        if account is not None and account.disabled:
            log.warning("sftp_login_refused", account=username, address=self.address, reason="account disabled")
            return None
        return account

    def _success(self, account: Account, method: str, fingerprint: str | None) -> int:
        codes = tuple(c for c in account.administrations if c in self.server.config.administrations)
        for code in codes:  # normally made by the intake already
            (self.server.config.inbox_dir / code).mkdir(parents=True, exist_ok=True)
        self.method = method
        self.session = Session(account, self.address, codes, self.server.config, self.server.ledger)
        self.fingerprint = fingerprint
        return AUTH_SUCCESSFUL

    def _failure(self, username: str, method: str, reason: str) -> int:
        self.server.record_failure(self.address, username, method, reason)
        return AUTH_FAILED

    # -- channels: only the sftp subsystem of a session ----------------------------------------------------

    def check_channel_request(self, kind: str, chanid: int) -> int:
        if kind == "session" and self.session is not None:
            return OPEN_SUCCEEDED
        self._refuse("channel", kind)
        return OPEN_FAILED_ADMINISTRATIVELY_PROHIBITED

    def check_channel_subsystem_request(self, channel: paramiko.Channel, name: str) -> bool:
        if name != "sftp" or self.session is None:
            self._refuse("subsystem", name)
            return False
        log.info(
            "sftp_login",
            account=self.session.account.name,
            address=self.address,
            method=self.method,
            key=getattr(self, "fingerprint", None),
            administrations=list(self.session.codes),
        )
        self.server.record_success(self.address, self.session.account.name)
        return bool(super().check_channel_subsystem_request(channel, name))

    def check_channel_exec_request(self, channel: paramiko.Channel, command: bytes) -> bool:
        self._refuse("exec", command.decode("utf-8", "replace")[:80])  # scp is an exec of "scp -t"
        return False

    def check_channel_shell_request(self, channel: paramiko.Channel) -> bool:
        self._refuse("shell", "")
        return False

    def check_channel_pty_request(self, *args: Any) -> bool:
        self._refuse("pty", "")
        return False

    def check_port_forward_request(self, address: str, port: int) -> int | bool:
        self._refuse("port_forward", f"{address}:{port}")
        return False

    def check_channel_direct_tcpip_request(self, chanid: int, origin: Any, destination: Any) -> int:
        self._refuse("direct_tcpip", str(destination))
        return OPEN_FAILED_ADMINISTRATIVELY_PROHIBITED

    def check_channel_x11_request(self, *args: Any) -> bool:
        self._refuse("x11", "")
        return False

    def check_channel_forward_agent_request(self, channel: paramiko.Channel) -> bool:
        self._refuse("agent_forward", "")
        return False

    def check_global_request(self, kind: str, msg: Message) -> bool:
        return False

    def _refuse(self, what: str, detail: str) -> None:
        account = self.session.account.name if self.session else None
        log.warning("sftp_request_refused", account=account, address=self.address, request=what, detail=detail)


class SftpServer:
    """The listener. ``start()`` binds (``port`` then holds the bound port) and serves until ``stop()``."""

    def __init__(self, config: Config, engine: Engine, clock: Callable[[], datetime]):
        self.config = config
        self.settings = config.sftp
        self.engine = engine
        self.clock = clock
        self.ledger = UploadLedger(engine, clock)
        self.port = 0
        self._guard = LoginGuard(self.settings.max_failures, self.settings.failure_window, self.settings.ban_seconds)
        self._lock = threading.Lock()
        self._transports: dict[paramiko.Transport, Connection] = {}  # guarded by _lock
        self._stopping = threading.Event()
        self._listener: socket.socket | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._threads: list[threading.Thread] = []
        self._host_key: paramiko.Ed25519Key | None = None
        self._auth_failures = 0  # guarded by _lock
        self._next_listener: list[socket.socket | None] = []  # a listener a reload made; the accept loop swaps

    # -- lifecycle -----------------------------------------------------------------------------------------

    def start(self) -> None:
        self._host_key = load_or_create_host_key(self.settings.host_key)
        listener = self._listen(self.settings.bind, self.settings.port)
        self._listener = listener
        self.port = listener.getsockname()[1]
        self.ledger.start()
        # Threads are made on demand; the accept loop keeps the number of connections to max_sessions (which
        # a reload may raise up to the configuration's limit of 1000).
        self._pool = ThreadPoolExecutor(max_workers=1000, thread_name_prefix="sftp-conn")
        for name, target in (("sftp-accept", self._accept_loop), ("sftp-maintenance", self._maintenance_loop)):
            thread = threading.Thread(target=target, name=name)
            thread.start()
            self._threads.append(thread)
        log.info(
            "sftp_started",
            bind=self.settings.bind,
            port=self.port,
            host_key=fingerprint_of(self._host_key.asbytes()),
            max_sessions=self.settings.max_sessions,
        )

    def _listen(self, bind: str, port: int) -> socket.socket:
        family = socket.AF_INET6 if ":" in bind else socket.AF_INET
        listener = socket.socket(family, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            listener.bind((bind, port))
        except OSError as exc:
            listener.close()
            raise ConfigError([f"sftp: cannot listen on {bind}:{port}: {exc.strerror}"]) from exc
        listener.listen(128)
        listener.settimeout(0.5)
        return listener

    def apply(self, config: Config) -> None:
        """A reloaded configuration. Connected sessions are never dropped: they keep the settings and
        administrations they logged in with; new logins, the limits, bans and idle timeout use the new ones.
        A new bind/port is bound before the old listener closes (a failure keeps the old one); ``enabled =
        false`` closes the listener and lets connected sessions finish. Accounts are read at every login."""
        new = config.sftp
        old = self.settings
        host_key = self._host_key
        if new.host_key != old.host_key:
            host_key = load_or_create_host_key(new.host_key)
        listener: list[socket.socket | None] = []
        if not new.enabled:
            listener = [None] if old.enabled else []
        elif (new.bind, new.port) != (old.bind, old.port) or not old.enabled:
            opened = self._listen(new.bind, new.port)  # ConfigError: the caller logs it, nothing changed
            self.port = opened.getsockname()[1]
            listener = [opened]
        with self._lock:
            self.config = config
            self.settings = new
            self._host_key = host_key
            self._guard.max_failures = new.max_failures
            self._guard.window = new.failure_window
            self._guard.ban_seconds = new.ban_seconds
            self._next_listener = listener or self._next_listener
        if listener and listener[0] is not None:
            log.info("sftp_listening", bind=new.bind, port=self.port)
        elif listener:
            log.info("sftp_listener_closed", reason="sftp disabled; connected sessions continue")

    def session_count(self) -> int:
        """Logged-in SFTP sessions now."""
        with self._lock:
            return sum(1 for c in self._transports.values() if c.session is not None)

    def auth_failure_count(self) -> int:
        with self._lock:
            return self._auth_failures

    def stop(self) -> None:
        self._stopping.set()
        for thread in self._threads:
            thread.join()
        with self._lock:
            transports = list(self._transports)
        for transport in transports:
            transport.close()
        if self._pool is not None:
            self._pool.shutdown(wait=True)
        self._swap_listener()
        if self._listener is not None:
            self._listener.close()
        self.ledger.stop()
        log.info("sftp_stopped")

    # -- connections ---------------------------------------------------------------------------------------

    def _swap_listener(self) -> socket.socket | None:
        """Take a listener a reload made (the accept thread alone closes the old one)."""
        with self._lock:
            pending, self._next_listener = self._next_listener, []
        if pending:
            if self._listener is not None:
                self._listener.close()
            self._listener = pending[0]
        return self._listener

    def _accept_loop(self) -> None:
        assert self._pool is not None
        while not self._stopping.is_set():
            listener = self._swap_listener()
            if listener is None:
                self._stopping.wait(0.5)
                continue
            try:
                sock, peer = listener.accept()
            except TimeoutError:
                continue
            except OSError as exc:
                log.error("sftp_accept_failed", error=exc.strerror)
                time.sleep(0.5)
                continue
            address = str(peer[0])
            reason = None
            if self.is_banned(address_key(address)):
                reason = "address banned"
            else:
                with self._lock:
                    if len(self._transports) >= self.settings.max_sessions:
                        reason = f"too many sessions (max_sessions {self.settings.max_sessions})"
            if reason:
                log.warning("sftp_connection_refused", address=address, reason=reason)
                sock.close()
                continue
            sock.settimeout(None)
            transport = self._make_transport(sock)
            with self._lock:
                self._transports[transport] = Connection(self, address)
            self._pool.submit(self._serve, transport)

    def _make_transport(self, sock: socket.socket) -> paramiko.Transport:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        transport = paramiko.Transport(
            ReadAheadSocket(sock),  # type: ignore[arg-type]
            default_window_size=WINDOW,
            default_max_packet_size=CHANNEL_PACKET,
        )
        options = transport.get_security_options()
        options.ciphers = tuple(c for c in CIPHERS if c in options.ciphers)
        options.digests = tuple(m for m in MACS if m in options.digests)
        assert self._host_key is not None
        transport.add_server_key(self._host_key)
        transport.set_subsystem_handler("sftp", GatewaySFTPServer, GatewaySftp)
        transport.banner_timeout = transport.handshake_timeout = transport.auth_timeout = self.settings.login_timeout
        return transport

    def _serve(self, transport: paramiko.Transport) -> None:
        with self._lock:
            connection = self._transports[transport]
        try:
            transport.start_server(server=connection)
            if self.settings.keepalive_seconds:
                transport.set_keepalive(int(self.settings.keepalive_seconds))
            started = time.monotonic()
            while transport.is_active() and not self._stopping.is_set():
                if connection.session is None and time.monotonic() - started > self.settings.login_timeout:
                    log.warning("sftp_login_timeout", address=connection.address)
                    break
                transport.join(0.5)
        except (paramiko.SSHException, EOFError, OSError) as exc:
            log.info("sftp_connection_failed", address=connection.address, error=str(exc) or type(exc).__name__)
        finally:
            transport.close()
            transport.join(5)
            with self._lock:
                self._transports.pop(transport, None)
            if connection.session is not None:
                log.info("sftp_logout", account=connection.session.account.name, address=connection.address)

    # -- brute force ---------------------------------------------------------------------------------------

    def is_banned(self, key: str) -> bool:
        with self._lock:
            return self._guard.banned(key, time.monotonic())

    def record_failure(self, address: str, account: str, method: str, reason: str) -> None:
        with self._lock:
            self._auth_failures += 1
            banned = self._guard.record_failure([address_key(address), account_key(account)], time.monotonic())
        log.warning("sftp_login_failed", account=account, address=address, method=method, reason=reason)
        for key in banned:
            log.warning("sftp_banned", who=key, seconds=self.settings.ban_seconds, after=self.settings.max_failures)
        time.sleep(self.settings.failure_delay)  # in this connection's own thread

    def record_success(self, address: str, account: str) -> None:
        with self._lock:
            self._guard.record_success([address_key(address), account_key(account)])

    # -- maintenance ---------------------------------------------------------------------------------------

    def _maintenance_loop(self) -> None:
        next_expiry = 0.0
        while not self._stopping.wait(1.0):
            now = time.monotonic()
            with self._lock:
                self._guard.prune(now)
                idle = [
                    (t, c)
                    for t, c in self._transports.items()
                    if c.session is not None and now - c.session.last_activity > self.settings.idle_timeout
                ]
            for transport, connection in idle:
                assert connection.session is not None
                log.info("sftp_idle_timeout", account=connection.session.account.name, address=connection.address)
                transport.close()
            if now >= next_expiry:
                next_expiry = now + 3600
                try:
                    expire_feedback(self.config, self.settings.feedback_days * 86400)
                except OSError as exc:
                    log.error("feedback_expiry_failed", error=str(exc))
