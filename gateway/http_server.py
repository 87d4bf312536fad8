"""The /healthz and /metrics endpoint: http.server, loopback by default, a bounded number of threads.

At most ``MAX_CONCURRENT`` requests are served at once (more are answered 503 at once, in the accept thread);
each connection has a socket timeout, so a slow client holds a slot for at most ``REQUEST_TIMEOUT`` seconds.
Only GET and HEAD of the two paths exist.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

import structlog
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from gateway.config import HttpSettings
from gateway.errors import ConfigError

log = structlog.get_logger("gateway.http")
MAX_CONCURRENT = 4
REQUEST_TIMEOUT = 5.0

HealthFn = Callable[[], tuple[bool, dict[str, Any]]]


class _Server(HTTPServer):
    daemon_threads = False

    def __init__(self, address: tuple[str, int], health: HealthFn, registry: CollectorRegistry):
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        super().__init__(address, _Handler)
        self.health = health
        self.registry = registry
        self.slots = threading.BoundedSemaphore(MAX_CONCURRENT)
        self.workers: set[threading.Thread] = set()
        self.workers_lock = threading.Lock()

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self.slots.acquire(blocking=False):
            with contextlib.suppress(OSError):
                request.sendall(b"HTTP/1.0 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            self.shutdown_request(request)
            return
        thread = threading.Thread(target=self._serve, args=(request, client_address), name="http-request")
        with self.workers_lock:
            self.workers.add(thread)
        thread.start()

    def _serve(self, request: Any, client_address: Any) -> None:
        try:
            request.settimeout(REQUEST_TIMEOUT)
            self.finish_request(request, client_address)
        except Exception:
            self.handle_error(request, client_address)
        finally:
            self.shutdown_request(request)
            self.slots.release()
            with self.workers_lock:
                self.workers.discard(threading.current_thread())

    def handle_error(self, request: Any, client_address: Any) -> None:
        log.warning("http_request_failed", client=str(client_address[0]))

    def join_workers(self) -> None:
        with self.workers_lock:
            workers = list(self.workers)
        for thread in workers:
            thread.join(REQUEST_TIMEOUT + 1)


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.0"
    server_version = "payt-gateway"
    sys_version = ""

    def do_GET(self) -> None:
        self._answer(send_body=True)

    def do_HEAD(self) -> None:
        self._answer(send_body=False)

    def _answer(self, send_body: bool) -> None:
        path = self.path.split("?", 1)[0]
        if path == "/healthz":
            healthy, document = self.server.health()
            body = (json.dumps(document, indent=2) + "\n").encode()
            self._reply(200 if healthy else 503, "application/json", body, send_body)
        elif path == "/metrics":
            self._reply(200, CONTENT_TYPE_LATEST, generate_latest(self.server.registry), send_body)
        else:
            self._reply(404, "text/plain; charset=utf-8", b"not found: try /healthz or /metrics\n", send_body)

    def _reply(self, code: int, content_type: str, body: bytes, send_body: bool) -> None:
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        if send_body:
            self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # scrapes every 15 s would flood the journal; failures are logged by the server


class HttpEndpoint:
    """A service (start/stop) serving /healthz and /metrics on ``settings.bind:settings.port``."""

    def __init__(self, settings: HttpSettings, health: HealthFn, registry: CollectorRegistry):
        self.settings = settings
        self.health = health
        self.registry = registry
        self.port = 0
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        try:
            server = _Server((self.settings.bind, self.settings.port), self.health, self.registry)
        except OSError as exc:
            raise ConfigError(
                [f"http: cannot listen on {self.settings.bind}:{self.settings.port}: {exc.strerror}"]
            ) from exc
        self._server = server
        self.port = server.server_address[1]
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.5}, name="http")
        self._thread.start()
        log.info("http_started", bind=self.settings.bind, port=self.port, paths=["/healthz", "/metrics"])

    def stop(self) -> None:
        if self._server is None or self._thread is None:
            return
        self._server.shutdown()
        self._thread.join()
        self._server.join_workers()
        self._server.server_close()
        self._server = None
        log.info("http_stopped")
