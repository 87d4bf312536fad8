"""Helpers for the service tests: a real notify socket (as systemd binds it) and a loopback HTTP client."""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.test_e2e_daemon import Daemon

GATEWAY_TABLE = """
[gateway]
data_dir = "."
database_url = "sqlite:///gateway.db"
settle_seconds = 0.2
sweep_seconds = 5
"""


class NotifySocket:
    """A Unix datagram socket bound like systemd's; every message is kept with its arrival time."""

    def __init__(self, folder: Path):
        self.path = folder / "notify.sock"
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(self.path))
        self.sock.settimeout(0.2)
        self.messages: list[tuple[float, dict[str, str]]] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._read, name="notify-socket")
        self._thread.start()

    def _read(self) -> None:
        while not self._stop.is_set():
            try:
                data = self.sock.recv(4096)
            except TimeoutError:
                continue
            fields = dict(line.split("=", 1) for line in data.decode().splitlines() if "=" in line)
            with self._lock:
                self.messages.append((time.monotonic(), fields))

    def env(self, watchdog_usec: int | None = None) -> dict[str, str]:
        env = {"NOTIFY_SOCKET": str(self.path)}
        if watchdog_usec is not None:
            env["WATCHDOG_USEC"] = str(watchdog_usec)
        return env

    def received(self, key: str, since: float = 0.0) -> list[tuple[float, dict[str, str]]]:
        with self._lock:
            return [(t, m) for t, m in self.messages if key in m and t >= since]

    def wait_for(self, d: Daemon, key: str, since: float = 0.0, timeout: float = 20.0) -> dict[str, str]:
        found = d.wait_for(lambda: self.received(key, since), timeout=timeout)
        return found[0][1]  # type: ignore[no-any-return]

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self.sock.close()


def get(port: int, path: str) -> tuple[int, str, str]:
    """(status, content type, body) of GET http://127.0.0.1:port/path."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=15)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.getheader("Content-Type") or "", response.read().decode()
    finally:
        conn.close()


def healthz(port: int) -> tuple[int, dict[str, Any]]:
    status, _type, body = get(port, "/healthz")
    return status, json.loads(body)


def metric(text: str, name: str, **labels: str) -> float | None:
    """The value of one sample in the Prometheus text format, or None."""
    wanted = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        if line.startswith("#") or not line.startswith(name):
            continue
        head, _, value = line.rpartition(" ")
        sample, _, label_text = head.partition("{")
        label_text = label_text.rstrip("}")
        got = ",".join(sorted(label_text.split(","))) if label_text else ""
        if sample == name and got == wanted:
            return float(value)
    return None


def http_port(d: Daemon) -> int:
    return int(d.wait_for(lambda: d.events("http_started"))[0]["port"])


def until(predicate: Callable[[], Any], timeout: float = 15.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError("condition not met in time")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def sighup(d: Daemon) -> None:
    os.kill(d.proc.pid, signal.SIGHUP)
