"""A real SMTP server (aiosmtpd) on loopback for tests: it records what it accepted and can misbehave."""

from __future__ import annotations

import asyncio
import socket
import ssl
import threading
from dataclasses import dataclass, field
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session


@dataclass
class Behaviour:
    """What the server does: by recipient address (lower case)."""

    defer_rcpt_once: set[str] = field(default_factory=set)  # 451 to the first RCPT TO, then accept
    defer_data_once: set[str] = field(default_factory=set)  # 451 at the end of the first DATA, then accept
    reject: set[str] = field(default_factory=set)  # 550 to RCPT TO (a bounce)
    hang_data: set[str] = field(default_factory=set)  # never answer the end of DATA


class Recorder:
    """The aiosmtpd handler: ``accepted`` holds (recipient, message bytes) of every accepted message."""

    def __init__(self, behaviour: Behaviour | None = None):
        self.behaviour = behaviour or Behaviour()
        self.accepted: list[tuple[str, bytes]] = []
        self.rcpt_seen: list[str] = []
        self.data_seen: list[str] = []
        self.connections = 0  # EHLO greetings without STARTTLS: one per connection
        self.hanging = threading.Event()
        self._release = asyncio.Event()
        self.lock = threading.Lock()

    async def handle_EHLO(
        self, server: SMTP, session: Session, envelope: Envelope, hostname: str, responses: list[str]
    ) -> list[str]:
        if not session.ssl:
            with self.lock:
                self.connections += 1
        session.host_name = hostname
        return responses

    async def handle_RCPT(self, server: SMTP, session: Session, envelope: Envelope, address: str, options: Any) -> str:
        addr = address.lower()
        with self.lock:
            self.rcpt_seen.append(addr)
            if addr in self.behaviour.reject:
                return "550 5.1.1 no such user"
            if addr in self.behaviour.defer_rcpt_once:
                self.behaviour.defer_rcpt_once.discard(addr)
                return "451 4.3.0 try again later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        rcpt = envelope.rcpt_tos[0].lower()
        with self.lock:
            self.data_seen.append(rcpt)
            if rcpt in self.behaviour.defer_data_once:
                self.behaviour.defer_data_once.discard(rcpt)
                return "451 4.3.0 local problem, try again"
            hang = rcpt in self.behaviour.hang_data
        if hang:
            self.hanging.set()
            await asyncio.sleep(3600)
        with self.lock:
            content = envelope.original_content or envelope.content
            assert isinstance(content, bytes)
            self.accepted.append((rcpt, content))
        return "250 2.0.0 queued"


def authenticator(username: str, password: str) -> Any:
    def check(server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any) -> AuthResult:
        ok = isinstance(data, LoginPassword) and data.login == username.encode() and data.password == password.encode()
        return AuthResult(success=ok, handled=False)

    return check


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start(
    handler: Recorder,
    tls: ssl.SSLContext | None = None,
    auth: tuple[str, str] | None = None,
    port: int | None = None,
) -> Controller:
    kwargs: dict[str, Any] = {}
    if tls is not None:
        kwargs |= {"tls_context": tls, "require_starttls": True}
    if auth is not None:
        kwargs |= {"authenticator": authenticator(*auth), "auth_required": True}
    controller = Controller(handler, hostname="127.0.0.1", port=port or free_port(), **kwargs)
    controller.start()
    return controller
