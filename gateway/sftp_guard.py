"""Brute-force protection of the SFTP logins: failures counted per address and per account in a sliding
window; N failures ban the key for a while. Pure bookkeeping: the caller passes the monotonic time in and
holds the lock (the server shares one guard between its connection threads)."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field


def address_key(address: str) -> str:
    return f"address {address}"


def account_key(name: str) -> str:
    return f"account {name}"


@dataclass
class LoginGuard:
    max_failures: int
    window: float
    ban_seconds: float
    _failures: dict[str, deque[float]] = field(default_factory=dict)
    _banned_until: dict[str, float] = field(default_factory=dict)

    def banned(self, key: str, now: float) -> bool:
        until = self._banned_until.get(key)
        if until is None:
            return False
        if now >= until:
            del self._banned_until[key]
            return False
        return True

    def record_failure(self, keys: list[str], now: float) -> list[str]:
        """Count one failure for each key; the keys that this failure banned."""
        newly: list[str] = []
        for key in keys:
            times = self._failures.setdefault(key, deque())
            times.append(now)
            while times and times[0] <= now - self.window:
                times.popleft()
            if len(times) >= self.max_failures and not self.banned(key, now):
                self._banned_until[key] = now + self.ban_seconds
                times.clear()
                newly.append(key)
        return newly

    def record_success(self, keys: list[str]) -> None:
        for key in keys:
            self._failures.pop(key, None)

    def prune(self, now: float) -> None:
        """Forget what no longer matters (called now and then, so the maps stay small)."""
        for key in [k for k, until in self._banned_until.items() if now >= until]:
            del self._banned_until[key]
        for key in [k for k, times in self._failures.items() if not times or times[-1] <= now - self.window]:
            del self._failures[key]
