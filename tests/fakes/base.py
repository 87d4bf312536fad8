"""The common part of the fake vendor servers: a real HTTP server on 127.0.0.1 (free port) in a thread,
a request log, a controllable clock, and switchable faults (one-shot errors, an outage from request N on).

A fake keeps its own clock; tests give the connector the same ``FakeClock``, so a connector's backoff
sleeps advance the fake's time (no real waiting) and token lifetimes and rate-limit windows stay
consistent. ``seconds_per_request`` lets time pass with every request (a token expiring mid-poll).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit


class FakeClock:
    """A clock shared by a fake server and the connector under test; ``sleep`` advances it."""

    def __init__(self, start: datetime | None = None):
        self._now = start or datetime(2026, 3, 4, 13, 0, tzinfo=UTC)
        self._lock = threading.Lock()
        self.slept: list[float] = []

    def now(self) -> datetime:
        with self._lock:
            return self._now

    def advance(self, seconds: float) -> None:
        with self._lock:
            self._now += timedelta(seconds=seconds)

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.advance(seconds)


class RealClock:
    """For fakes serving a gateway subprocess, which runs on the real clock."""

    def now(self) -> datetime:
        return datetime.now(UTC)

    def advance(self, seconds: float) -> None:
        raise RuntimeError("the real clock cannot be advanced")


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]  # lower-case names
    body: bytes
    url: str

    def param(self, name: str) -> str | None:
        values = self.query.get(name)
        return values[0] if values else None

    def form(self) -> dict[str, str]:
        return {k: v[0] for k, v in parse_qs(self.body.decode("utf-8")).items()}

    def json(self) -> Any:
        return json.loads(self.body or b"null")


@dataclass
class Response:
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)


def json_response(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(status, json.dumps(data).encode("utf-8"), {"Content-Type": "application/json", **(headers or {})})


def outage_response() -> Response:
    return Response(
        503, b"<html><body>503 Service Temporarily Unavailable</body></html>", {"Content-Type": "text/html"}
    )


class FakeServer:
    """Subclasses implement ``route(request)``; token-endpoint requests are ``is_data`` False."""

    def __init__(self, clock: FakeClock | RealClock | None = None):
        self.clock = clock or FakeClock()
        self.log: list[Request] = []
        self.lock = threading.RLock()
        self.data_requests = 0
        self.seconds_per_request = 0.0
        self.faults: dict[int, Response] = {}  # data request number (1-based) → a one-shot answer
        self.outage_from: int | None = None  # from this data request on: 503 for every data request
        self.hooks: dict[int, Callable[[], None]] = {}  # data request number → run before answering it
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ------------------------------------------------------------------------------------

    def __enter__(self) -> FakeServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # headers and body are separate writes: no 40 ms delayed-ACK stall

            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                parts = urlsplit(self.path)
                request = Request(
                    self.command,
                    parts.path,
                    parse_qs(parts.query, keep_blank_values=True),
                    {k.lower(): v for k, v in self.headers.items()},
                    body,
                    fake.base_url + self.path,
                )
                response = fake.dispatch(request)
                self.send_response(response.status)
                for name, value in response.headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(response.body)))
                self.end_headers()
                self.wfile.write(response.body)

            do_GET = do_POST = do_DELETE = _serve

            def log_message(self, format: str, *args: object) -> None:
                return

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="fake-vendor")
        self._thread.start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join()
        self._server = self._thread = None

    @property
    def base_url(self) -> str:
        assert self._server is not None, "the fake is not started"
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    # -- dispatch -------------------------------------------------------------------------------------

    def dispatch(self, request: Request) -> Response:
        with self.lock:
            self.log.append(request)
            if self.seconds_per_request:
                self.clock.advance(self.seconds_per_request)
            if self.is_data(request):
                self.data_requests += 1
                number = self.data_requests
                if number in self.hooks:
                    self.hooks.pop(number)()
                if number in self.faults:
                    return self.faults.pop(number)
                if self.outage_from is not None and number >= self.outage_from:
                    return outage_response()
            return self.route(request)

    def is_data(self, request: Request) -> bool:
        return True

    def route(self, request: Request) -> Response:
        raise NotImplementedError

    # -- for assertions --------------------------------------------------------------------------------

    def requests_to(self, fragment: str) -> list[Request]:
        with self.lock:
            return [r for r in self.log if fragment in r.path]
