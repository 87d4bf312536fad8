"""Transports: how a built message leaves. ``outbox`` writes ``.eml`` files; ``smtp`` talks to a mail server.

A transport answers every message with one ``Outcome``; it never raises for a message's fate:
- ``sent``: accepted (the file is in place, or the server answered 250 to the end of DATA);
- ``transient``: certainly not accepted, try again later (4xx, connection refused or lost before DATA);
- ``bounced``: the server refused the recipient permanently (5xx to RCPT TO);
- ``failed``: refused permanently for another reason (5xx to MAIL FROM or DATA);
- ``unknown``: the connection broke after the message was handed over and before the answer: it may or may
  not have been accepted. Never retried automatically (an operator resolves it).
"""

from __future__ import annotations

import contextlib
import enum
import os
import re
import smtplib
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from gateway.config import SenderConfig
from gateway.errors import ConfigError
from gateway.secrets import describe_secret, read_secret


class Outcome(enum.StrEnum):
    SENT = "sent"
    TRANSIENT = "transient"
    BOUNCED = "bounced"
    FAILED = "failed"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class Result:
    outcome: Outcome
    detail: str = ""


@dataclass(frozen=True)
class Envelope:
    sender: str
    recipient: str
    data: bytes
    name: str  # a file-system safe name for the message (the outbox transport's file name)


class Transport(Protocol):
    def send(self, envelope: Envelope) -> Result: ...

    def close(self) -> None: ...


SAFE = re.compile(r"[^A-Za-z0-9._-]+")


def safe_name(text: str) -> str:
    return SAFE.sub("_", text)[:80] or "_"


class OutboxTransport:
    """One ``.eml`` file per message in ``folder``, written under a temporary name, synced, then renamed."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.tmp = folder / ".tmp"

    def send(self, envelope: Envelope) -> Result:
        try:
            self.tmp.mkdir(parents=True, exist_ok=True)
            temporary = self.tmp / f"{envelope.name}.{os.getpid()}.part"
            with open(temporary, "wb") as out:
                out.write(envelope.data)
                out.flush()
                os.fsync(out.fileno())
            os.replace(temporary, self.folder / f"{envelope.name}.eml")
        except OSError as exc:
            return Result(Outcome.TRANSIENT, f"cannot write the outbox file: {exc}")
        return Result(Outcome.SENT, str(self.folder / f"{envelope.name}.eml"))

    def close(self) -> None:
        return None


def _reply(code: int, message: bytes | str) -> str:
    text = message.decode("utf-8", "replace") if isinstance(message, bytes) else message
    return f"{code} {' '.join(text.split())}"


LEADING_DOT = re.compile(rb"(?m)^\.")


def _dot_stuffed(data: bytes) -> bytes:
    """The DATA payload: leading dots doubled (RFC 5321 §4.5.2), ending in CRLF . CRLF."""
    body = LEADING_DOT.sub(b"..", data)
    if not body.endswith(b"\r\n"):
        body += b"\r\n"
    return body + b".\r\n"


class SmtpTransport:
    """SMTP with STARTTLS and login; one connection reused for every message of a pass, opened lazily."""

    def __init__(self, config: SenderConfig, password: str | None, tls: ssl.SSLContext | None = None):
        self.config = config
        self.password = password
        self.tls = tls
        self.conn: smtplib.SMTP | None = None

    def _connect(self) -> smtplib.SMTP:
        c = self.config
        conn = smtplib.SMTP(c.smtp_host, c.smtp_port, timeout=c.timeout_seconds)
        try:
            conn.ehlo()
            if c.smtp_starttls:
                conn.starttls(context=self.tls or ssl.create_default_context())
                conn.ehlo()
            if c.smtp_username:
                conn.login(c.smtp_username, self.password or "")
        except BaseException:
            conn.close()
            raise
        return conn

    def _drop(self) -> None:
        if self.conn is not None:
            try:
                self.conn.close()
            finally:
                self.conn = None

    def _reset(self) -> None:
        try:
            assert self.conn is not None
            self.conn.rset()
        except (smtplib.SMTPException, OSError):
            self._drop()

    def send(self, envelope: Envelope) -> Result:
        try:
            if self.conn is None:
                self.conn = self._connect()
        except smtplib.SMTPAuthenticationError as exc:
            return Result(Outcome.TRANSIENT, f"authentication refused: {_reply(exc.smtp_code, exc.smtp_error)}")
        except (smtplib.SMTPException, OSError) as exc:
            self._drop()
            where = f"{self.config.smtp_host}:{self.config.smtp_port}"
            return Result(Outcome.TRANSIENT, f"cannot connect to {where}: {exc}")
        conn = self.conn
        try:
            code, message = conn.mail(envelope.sender)
            if code != 250:
                self._reset()
                kind = Outcome.TRANSIENT if 400 <= code < 500 else Outcome.FAILED
                return Result(kind, f"MAIL FROM refused: {_reply(code, message)}")
            code, message = conn.rcpt(envelope.recipient)
            if code not in (250, 251):
                self._reset()
                kind = Outcome.TRANSIENT if 400 <= code < 500 else Outcome.BOUNCED
                return Result(kind, f"recipient refused: {_reply(code, message)}")
        except (smtplib.SMTPException, OSError) as exc:  # nothing was handed over yet
            self._drop()
            return Result(Outcome.TRANSIENT, f"connection lost before DATA: {exc}")
        try:  # DATA, split as smtplib.SMTP.data does, to know whether the message itself was handed over
            conn.putcmd("data")
            code, message = conn.getreply()
        except (smtplib.SMTPException, OSError) as exc:
            self._drop()
            return Result(Outcome.TRANSIENT, f"connection lost before the message was handed over: {exc}")
        if code != 354:
            self._reset()
            kind = Outcome.TRANSIENT if 400 <= code < 500 else Outcome.FAILED
            return Result(kind, f"DATA refused: {_reply(code, message)}")
        try:
            conn.send(_dot_stuffed(envelope.data))
            code, message = conn.getreply()
        except (smtplib.SMTPException, OSError) as exc:
            self._drop()
            return Result(Outcome.UNKNOWN, f"connection lost while the message was handed over: {exc}")
        if code == 250:
            return Result(Outcome.SENT, _reply(code, message))
        self._reset()
        kind = Outcome.TRANSIENT if 400 <= code < 500 else Outcome.FAILED
        return Result(kind, f"message refused: {_reply(code, message)}")

    def close(self) -> None:
        if self.conn is None:
            return
        with contextlib.suppress(smtplib.SMTPException, OSError):
            self.conn.quit()
        self._drop()


def make_transport(config: SenderConfig, outbox: Path) -> Transport:
    """The configured transport (the composition root's choice). The SMTP password is a credential."""
    if config.transport == "outbox":
        return OutboxTransport(outbox)
    password = read_secret("SMTP_PASSWORD")
    if config.smtp_username and password is None:
        raise ConfigError(
            [f"sender.smtp_username: set, but the secret SMTP_PASSWORD is missing: {describe_secret('SMTP_PASSWORD')}"]
        )
    tls = None
    if config.smtp_ca_file:
        try:
            tls = ssl.create_default_context(cafile=config.smtp_ca_file)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError([f"sender.smtp_ca_file: cannot load {config.smtp_ca_file}: {exc}"]) from exc
    return SmtpTransport(config, password, tls)
