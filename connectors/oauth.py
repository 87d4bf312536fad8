"""OAuth 2 authorisation-code flow with refresh: the pure token decisions and the session shell.

Refreshes are serialised through the ``TokenStore``'s lock, and the new pair is committed before the new
access token is used (SPEC.md §6.1: a rotated refresh token that is lost means a manual re-authorisation).
Exact Online refuses a token request within 570 s of the previous one (SPEC.md §1.2): ``min_refresh_age``.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlencode

from connectors.base import AuthorizationError, Clock, TokenSet, TokenStore, TransientVendorError
from connectors.http import VendorHttp, describe

EXPIRY_MARGIN = timedelta(seconds=30)


class Action(enum.Enum):
    USE = "use"
    REFRESH = "refresh"
    WAIT = "wait"
    REAUTHORIZE = "reauthorize"


@dataclass(frozen=True)
class Decision:
    action: Action
    wait_seconds: float = 0.0


def decide_token_action(
    tokens: TokenSet | None,
    now: datetime,
    *,
    rejected: bool = False,
    min_refresh_age: timedelta = timedelta(0),
    margin: timedelta = EXPIRY_MARGIN,
) -> Decision:
    """What to do before the next call. ``rejected``: the vendor just answered 401 to this access token.

    Use a token that is valid beyond ``margin``; refresh one that expires within it, has expired, or was
    rejected; but never within ``min_refresh_age`` of the last token request (Exact: 570 s): then wait
    for the remainder, unless the token is still valid (a proactive refresh can simply happen later).
    """
    if tokens is None:
        return Decision(Action.REAUTHORIZE)
    expiring = tokens.expires_at is not None and now >= tokens.expires_at - margin
    if not rejected and not expiring:
        return Decision(Action.USE)
    if tokens.refresh_token is None:
        return Decision(Action.REAUTHORIZE)
    age = now - tokens.obtained_at
    if age >= min_refresh_age:
        return Decision(Action.REFRESH)
    still_valid = tokens.expires_at is not None and now < tokens.expires_at
    if still_valid and not rejected:
        return Decision(Action.USE)
    return Decision(Action.WAIT, (min_refresh_age - age).total_seconds())


def parse_token_response(body: Mapping[str, Any], now: datetime, previous: TokenSet | None = None) -> TokenSet:
    """A token endpoint's JSON. ``expires_in`` may be a string (Exact: ``"600"``); ``token_type`` is
    compared case-insensitively; a missing refresh token keeps the previous one."""
    access = body.get("access_token")
    if not isinstance(access, str) or not access:
        raise TransientVendorError("the token endpoint answered without an access_token")
    token_type = str(body.get("token_type", "bearer"))
    if token_type.lower() != "bearer":
        raise AuthorizationError(f"the token endpoint issued a {token_type!r} token, not a bearer token")
    expires_at = None
    raw = body.get("expires_in")
    if raw is not None and str(raw).strip():
        try:
            expires_at = now + timedelta(seconds=int(str(raw).strip()))
        except ValueError as exc:
            raise TransientVendorError(f"the token endpoint gave expires_in={raw!r}, not a number") from exc
    refresh = body.get("refresh_token")
    if not isinstance(refresh, str) or not refresh:
        refresh = previous.refresh_token if previous else None
    return TokenSet(access, refresh, now, expires_at, dict(previous.extra) if previous else {})


@dataclass(frozen=True)
class OAuthClient:
    """A vendor's OAuth endpoints and this gateway's client registration."""

    authorize_url: str
    token_url: str
    client_id: str
    client_secret: str
    scope: str | None = None
    basic_auth: bool = False  # Twinfield: client credentials as HTTP Basic; others: in the form body
    min_refresh_age: timedelta = timedelta(0)


class OAuthSession:
    """Hands out a valid access token, refreshing through the token store's lock when needed."""

    def __init__(self, vendor: str, client: OAuthClient, store: TokenStore, http: VendorHttp, clock: Clock):
        self.vendor = vendor
        self.client = client
        self.store = store
        self.http = http
        self.clock = clock
        self.refreshes = 0

    def authorization_url(self, redirect_uri: str, state: str, **extra: str) -> str:
        query = {"client_id": self.client.client_id, "redirect_uri": redirect_uri, "response_type": "code"}
        if state:
            query["state"] = state
        if self.client.scope:
            query["scope"] = self.client.scope
        query.update(extra)
        return f"{self.client.authorize_url}?{urlencode(query)}"

    def exchange_code(self, code: str, redirect_uri: str) -> TokenSet:
        form = {"grant_type": "authorization_code", "code": code, "redirect_uri": redirect_uri}
        stored = self.store.update(lambda current: self._token_request(form, None))
        assert stored is not None
        return stored

    def access_token(self, rejected: str | None = None) -> str:
        """A token to use now. ``rejected``: the token the vendor just refused with 401."""
        for _ in range(3):
            tokens = self.store.load()
            is_rejected = rejected is not None and tokens is not None and tokens.access_token == rejected
            decision = decide_token_action(
                tokens, self.clock.now(), rejected=is_rejected, min_refresh_age=self.client.min_refresh_age
            )
            if decision.action is Action.USE:
                assert tokens is not None
                return tokens.access_token
            if decision.action is Action.REAUTHORIZE:
                raise AuthorizationError(self._reauthorize_reason(tokens, rejected))
            if decision.action is Action.WAIT:
                if decision.wait_seconds > self.http.max_wait:
                    raise TransientVendorError(
                        f"{self.vendor}: the access token was refused and a refresh is allowed only in "
                        f"{decision.wait_seconds:.0f} s; the next poll tries again"
                    )
                self.clock.sleep(decision.wait_seconds)
                continue
            refreshed = self.store.update(lambda current: self._refresh_locked(current, rejected))
            if refreshed is not None and refreshed.access_token != rejected:
                return refreshed.access_token
        raise AuthorizationError(f"{self.vendor}: no usable access token after refreshing; run connect again")

    def _refresh_locked(self, current: TokenSet | None, rejected: str | None) -> TokenSet | None:
        """Under the store's lock: refresh unless another worker already did (then keep its tokens)."""
        is_rejected = rejected is not None and current is not None and current.access_token == rejected
        decision = decide_token_action(
            current, self.clock.now(), rejected=is_rejected, min_refresh_age=self.client.min_refresh_age
        )
        if decision.action is not Action.REFRESH or current is None or current.refresh_token is None:
            return None
        self.refreshes += 1
        return self._token_request({"grant_type": "refresh_token", "refresh_token": current.refresh_token}, current)

    def _token_request(self, form: dict[str, str], previous: TokenSet | None) -> TokenSet:
        auth = None
        if self.client.basic_auth:
            auth = (self.client.client_id, self.client.client_secret)
        else:
            form = {**form, "client_id": self.client.client_id, "client_secret": self.client.client_secret}
        response = self.http.send(
            "POST", self.client.token_url, data=form, auth=auth, headers={"Accept": "application/json"}
        )
        if response.status_code != 200:
            raise self._token_error(response, form["grant_type"])
        body = self.http.json(response)
        if not isinstance(body, dict):
            raise TransientVendorError(f"{self.vendor}: the token endpoint answered {describe(response, 120)}")
        return parse_token_response(body, self.clock.now(), previous)

    def _token_error(self, response: Any, grant: str) -> Exception:
        try:
            body = response.json()
        except ValueError:
            body = {}
        code = str(body.get("error", "")) if isinstance(body, dict) else ""
        text = str(body.get("error_description", "")) if isinstance(body, dict) else ""
        reason = response.headers.get("Reason", "")
        detail = "; ".join(x for x in (code, text, reason) if x) or describe(response, 120)
        if "TooEarly" in reason or "not expired" in text:
            return TransientVendorError(f"{self.vendor}: the token endpoint refused a refresh as too early ({detail})")
        what = "the authorisation code" if grant == "authorization_code" else "the refresh token"
        return AuthorizationError(
            f"{self.vendor}: {what} was refused (HTTP {response.status_code}: {detail}); run connect again"
        )

    def _reauthorize_reason(self, tokens: TokenSet | None, rejected: str | None) -> str:
        if tokens is None:
            return f"{self.vendor}: not authorised yet; run `payt-gateway connect` for this administration"
        return f"{self.vendor}: the access token was refused and there is no refresh token; run connect again"
