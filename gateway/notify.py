"""sd_notify(3) without a C library: one datagram per message to ``$NOTIFY_SOCKET``.

Without ``NOTIFY_SOCKET`` (not started by systemd with ``Type=notify``) every call is a no-op. The watchdog
interval comes from ``WATCHDOG_USEC`` (ignored when ``WATCHDOG_PID`` names another process, as
``sd_watchdog_enabled`` does); ``ping_interval`` is half of it, as systemd recommends.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Mapping

import structlog

log = structlog.get_logger("gateway.notify")


def monotonic_usec() -> int:
    """CLOCK_MONOTONIC in microseconds: what systemd 253+ expects with ``RELOADING=1``."""
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000


def watchdog_interval(environ: Mapping[str, str], pid: int) -> float | None:
    """Seconds between the watchdog's deadlines, or None when systemd does not watch this process."""
    usec = environ.get("WATCHDOG_USEC", "")
    owner = environ.get("WATCHDOG_PID", "")
    if not usec.isdigit() or int(usec) == 0:
        return None
    if owner and (not owner.isdigit() or int(owner) != pid):
        return None
    return int(usec) / 1_000_000


def one_line(text: str, limit: int = 200) -> str:
    """A STATUS= value: a single line, bounded."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


class Notifier:
    """Talks to the service manager. Safe to call from any thread; a send that fails is logged once."""

    def __init__(self, environ: Mapping[str, str] | None = None):
        env = os.environ if environ is None else environ
        self.address = _address(env.get("NOTIFY_SOCKET", ""))
        interval = watchdog_interval(env, os.getpid())
        self.ping_interval = None if interval is None else interval / 2
        self._sock: socket.socket | None = None
        self._failed = False

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def send(self, **fields: str | int) -> bool:
        """``send(READY=1, STATUS="…")``; True when the datagram went out."""
        if self.address is None:
            return False
        message = "\n".join(f"{key}={value}" for key, value in fields.items()).encode("utf-8")
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            self._sock.sendto(message, self.address)
        except OSError as exc:
            if not self._failed:
                self._failed = True
                log.warning("notify_failed", socket=_printable(self.address), error=exc.strerror or str(exc))
            return False
        return True

    def ready(self, status: str) -> bool:
        return self.send(READY=1, STATUS=one_line(status))

    def status(self, status: str) -> bool:
        return self.send(STATUS=one_line(status))

    def reloading(self, status: str = "reloading the configuration") -> bool:
        return self.send(RELOADING=1, MONOTONIC_USEC=monotonic_usec(), STATUS=one_line(status))

    def stopping(self, status: str = "stopping") -> bool:
        return self.send(STOPPING=1, STATUS=one_line(status))

    def watchdog(self) -> bool:
        return self.send(WATCHDOG=1)

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


def _address(value: str) -> str | bytes | None:
    """A filesystem path, or ``@name`` for the abstract namespace (a leading NUL byte)."""
    if not value or value[0] not in "/@":
        return None
    if value[0] == "@":
        return b"\0" + value[1:].encode()
    return value


def _printable(address: str | bytes) -> str:
    return address if isinstance(address, str) else "@" + address[1:].decode(errors="replace")
