"""``payt-gateway connect CODE``: the one-time authorisation of an API connector.

OAuth vendors: print the authorisation URL; take the redirect on a one-shot listener when the redirect URI
is a loopback address (``http://127.0.0.1:PORT/PATH``), else read the pasted code (or the whole redirect
URL) from standard input; exchange the code (the tokens are stored encrypted); then check that the vendor
answers. Vendors with fixed credentials (a personal token): only the check.
"""

from __future__ import annotations

import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, HTTPServer
from urllib.parse import parse_qs, unquote, urlsplit

from connectors.base import AuthorizationError, Connector

DEFAULT_REDIRECT_URI = "http://127.0.0.1:8765/callback"
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "[::1]", "::1")


@dataclass
class Redirect:
    code: str | None = None
    error: str | None = None


def parse_redirect(text: str, state: str) -> Redirect:
    """A pasted code, or a redirect URL / query string carrying ``code`` (and ``state``, which must match
    unless ``state`` is empty)."""
    text = text.strip()
    if "code=" not in text and "error=" not in text:
        return Redirect(code=unquote(text) if text else None)
    query = parse_qs(urlsplit(text).query if "?" in text else text)
    if "error" in query:
        return Redirect(error=" ".join(query.get("error_description", query["error"])))
    if state and query.get("state", [state])[0] != state:
        return Redirect(error="the redirect's state does not match this authorisation (a stale or forged link)")
    codes = query.get("code")
    return Redirect(code=codes[0] if codes else None)


def is_loopback(uri: str) -> bool:
    parts = urlsplit(uri)
    return parts.scheme == "http" and (parts.hostname or "") in LOOPBACK_HOSTS and parts.port is not None


def wait_for_redirect(uri: str, state: str, timeout: float) -> Redirect:
    """Serve ``uri`` (loopback) until a redirect with the right state arrives, or ``timeout`` seconds pass."""
    parts = urlsplit(uri)
    result = Redirect()
    done = threading.Event()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            here = urlsplit(self.path)
            found = parse_redirect(f"?{here.query}", state) if here.path == (parts.path or "/") else Redirect()
            if found.code is None and found.error is None:
                self._answer(404, "Not the authorisation redirect.")
                return
            result.code, result.error = found.code, found.error
            self._answer(200 if found.code else 400, found.error or "payt-gateway is authorised. Close this window.")
            done.set()

        def _answer(self, status: int, text: str) -> None:
            body = text.encode("utf-8")
            self.send_response(status)
            self.send_header("Content-Type", "text/plain; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:  # the query holds the code: never log it
            return

    server = HTTPServer((parts.hostname or "127.0.0.1", parts.port or 80), Handler)
    server.timeout = 0.2
    try:
        waited = 0.0
        while not done.is_set() and waited < timeout:
            server.handle_request()
            waited += server.timeout
    finally:
        server.server_close()
    if not done.is_set():
        result.error = f"no redirect arrived within {timeout:.0f} s"
    return result


def connect(
    connector: Connector,
    redirect_uri: str,
    *,
    code: str | None,
    timeout: float,
    say: Callable[[str], None],
    read_line: Callable[[], str],
) -> str:
    """Authorise (if the vendor uses OAuth) and check; a description of what was reached."""
    state = secrets.token_urlsafe(16)
    url = connector.authorization_url(redirect_uri, state)
    if url is None:
        return connector.check()
    if code is not None:  # given on the command line: from an earlier authorisation, its state is unknown
        redirect = parse_redirect(code, "")
    else:
        say(f"Open this URL in a browser and authorise payt-gateway:\n\n  {url}\n")
        if is_loopback(redirect_uri):
            say(f"Waiting for the redirect to {redirect_uri} (up to {timeout:.0f} s) …")
            redirect = wait_for_redirect(redirect_uri, state, timeout)
        else:
            say(f"After authorising, the browser goes to {redirect_uri}; paste that whole address (or the code):")
            redirect = parse_redirect(read_line(), state)
    if redirect.error or not redirect.code:
        raise AuthorizationError(f"authorisation failed: {redirect.error or 'no code was given'}")
    connector.complete_authorization(redirect.code, redirect_uri)
    return connector.check()
