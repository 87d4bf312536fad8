"""The HTTP shell every REST or SOAP connector uses: httpx plus retries that honour the vendor's headers.

Transient failures (timeouts, connection errors, 429, 500/502/503/504) are retried after the wait
``connectors.backoff`` decides, up to ``max_attempts``; a wait longer than ``max_wait_seconds`` is not
slept but fails the run at once (the next scheduled poll picks it up). Other statuses are returned to the
connector, which knows its vendor's error bodies. httpx errors never leave this module (DESIGN.md rule 7).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import httpx

from connectors.backoff import decide_pause, decide_retry_wait, is_retryable
from connectors.base import Clock, TransientVendorError

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
        last = "no attempt"
        status: int | None
        response_headers: dict[str, str]
        for attempt in range(1, self.max_attempts + 1):
            try:
                self.requests += 1
                response = self.client.request(
                    method, url, headers=headers, params=params, data=data, content=content, auth=auth
                )
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
            if attempt == self.max_attempts:
                break
            wait = decide_retry_wait(status, response_headers, self.clock.now(), attempt)
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


def _where(url: str) -> str:
    """The URL without its query string (filters and tokens do not belong in a reason)."""
    return url.split("?", 1)[0]
