"""The HTTP shell every REST or SOAP connector uses: httpx plus retries that honour the vendor's headers.

Transient failures (timeouts, connection errors, 429, 500/502/503/504) are retried after the wait
``connectors.backoff`` decides, up to ``max_attempts``; a wait longer than ``max_wait_seconds`` is not
slept but fails the run at once (the next scheduled poll picks it up). Other statuses are returned to the
connector, which knows its vendor's error bodies. httpx errors never leave this module (DESIGN.md rule 7).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, BinaryIO

import httpx

from connectors.backoff import decide_pause, decide_retry_wait, is_retryable
from connectors.base import Clock, ConnectorContext, PermanentVendorError, TransientVendorError

USER_AGENT = "payt-gateway (+https://github.com/payt-gateway)"


def describe(response: httpx.Response, limit: int = 300) -> str:
    """A short readable description of a response for a run's reason: status and the start of the body."""
    text = response.text.strip().replace("\n", " ")
    if len(text) > limit:
        text = text[:limit] + "…"
    return f"HTTP {response.status_code}" + (f": {text}" if text else "")


class VendorHttp:
    def __init__(
        self,
        vendor: str,
        clock: Clock,
        *,
        timeout: float = 30.0,
        max_attempts: int = 6,
        max_wait: float = 600.0,
        transport: httpx.BaseTransport | None = None,
    ):
        self.vendor = vendor
        self.clock = clock
        self.max_attempts = max(1, max_attempts)
        self.max_wait = max_wait
        self.requests = 0  # requests sent, retries included (the benchmark reports it)
        self.client = httpx.Client(
            timeout=timeout, headers={"User-Agent": USER_AGENT}, transport=transport, follow_redirects=False
        )

    @classmethod
    def for_connector(
        cls, vendor: str, ctx: ConnectorContext, transport: httpx.BaseTransport | None = None
    ) -> VendorHttp:
        """The client of a connector, with the timeout and retry settings every connector has."""
        s = ctx.settings
        return cls(
            vendor,
            ctx.clock,
            timeout=float(s["timeout_seconds"]),
            max_attempts=int(s["max_attempts"]),
            max_wait=float(s["max_wait_seconds"]),
            transport=transport,
        )

    def close(self) -> None:
        self.client.close()

    def send(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        params: Mapping[str, str] | None = None,
        data: Mapping[str, str] | None = None,
        content: str | bytes | None = None,
        auth: tuple[str, str] | None = None,
        final: Callable[[httpx.Response], bool] | None = None,
    ) -> httpx.Response:
        """Send until a non-transient answer arrives; raise TransientVendorError when retries run out.

        ``final``: a response it accepts is returned even with a retryable status (a SOAP fault is HTTP 500).
        """

        def attempt() -> httpx.Response:
            return self.client.request(
                method, url, headers=headers, params=params, data=data, content=content, auth=auth
            )

        return self._retrying(url, attempt, final)

    def download(
        self, url: str, sink: BinaryIO, *, max_bytes: int, headers: Mapping[str, str] | None = None
    ) -> httpx.Response:
        """GET ``url`` with the same retries as ``send``, streaming a 200 answer's body into ``sink`` (emptied
        before every attempt); memory stays bounded. Other answers are returned with their body read. A body
        larger than ``max_bytes`` is a PermanentVendorError."""

        def attempt() -> httpx.Response:
            sink.seek(0)
            sink.truncate()
            with self.client.stream("GET", url, headers=headers) as response:
                if response.status_code != 200:
                    response.read()
                    return response
                written = 0
                for chunk in response.iter_bytes(1 << 16):
                    written += len(chunk)
                    if written > max_bytes:
                        raise PermanentVendorError(
                            f"{self.vendor}: the download from {_where(url)} is larger than {max_bytes} bytes; refused"
                        )
                    sink.write(chunk)
                return response

        return self._retrying(url, attempt, None)

    def _retrying(
        self, url: str, attempt: Callable[[], httpx.Response], final: Callable[[httpx.Response], bool] | None
    ) -> httpx.Response:
        last = "no attempt"
        status: int | None
        response_headers: dict[str, str]
        for number in range(1, self.max_attempts + 1):
            try:
                self.requests += 1
                response = attempt()
            except httpx.TimeoutException:
                last, status, response_headers = f"timed out calling {_where(url)}", None, {}
            except httpx.TransportError as exc:
                last, status, response_headers = f"cannot reach {_where(url)}: {exc}", None, {}
            else:
                if not is_retryable(response.status_code) or (final is not None and final(response)):
                    pause = decide_pause(response.headers, self.clock.now())
                    if 0 < pause <= self.max_wait:
                        self.clock.sleep(pause)
                    return response
                status, response_headers = response.status_code, dict(response.headers)
                last = f"{describe(response, 120)} from {_where(url)}"
            if number == self.max_attempts:
                break
            wait = decide_retry_wait(status, response_headers, self.clock.now(), number)
            if wait > self.max_wait:
                raise TransientVendorError(
                    f"{self.vendor}: {last}; the vendor asks to wait {wait:.0f} s, longer than "
                    f"max_wait_seconds ({self.max_wait:.0f} s); the next poll tries again"
                )
            self.clock.sleep(wait)
        raise TransientVendorError(f"{self.vendor}: {last} (gave up after {self.max_attempts} attempts)")

    def json(self, response: httpx.Response) -> Any:
        try:
            return response.json()
        except ValueError as exc:
            raise TransientVendorError(
                f"{self.vendor}: the answer of {_where(str(response.request.url))} is not JSON "
                f"({describe(response, 120)})"
            ) from exc


REDIRECTS = (301, 302, 303, 307, 308)


def redirect_target(response: httpx.Response) -> str | None:
    """The absolute URL a redirect answer points to; None for any other answer."""
    location = response.headers.get("location")
    if response.status_code not in REDIRECTS or not location:
        return None
    return str(response.url.join(location))


def _where(url: str) -> str:
    """The URL without its query string (filters and tokens do not belong in a reason)."""
    return url.split("?", 1)[0]
