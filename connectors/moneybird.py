"""Moneybird API v2 (SPEC.md §3): open sales invoices with their embedded contacts → a snapshot.

Authentication: a personal API token (secret ``TOKEN``), or OAuth when ``client_id`` is configured (secret
``CLIENT_SECRET``; tokens from ``connect``, refreshed on expiry or on a 401). The list filter always carries
the open states **and** a wide custom period: the default ``this_year`` silently drops older invoices.
Paging follows ``Link: rel="next"`` when present and stops on a short page either way.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any, BinaryIO

import httpx

from connectors.base import (
    MAX_PDF_BYTES,
    AuthorizationError,
    Connector,
    ConnectorContext,
    PermanentVendorError,
    Setting,
    TransientVendorError,
    Vendor,
    require_secret,
)
from connectors.http import REDIRECTS, VendorHttp, describe, redirect_target
from connectors.oauth import OAuthClient, OAuthSession
from connectors.values import iso_date, lower, money, text, upper
from gateway.records import Debtor, Entry, Invoice, Snapshot, notice

OPEN_STATES = "open|pending_payment|reminded|late"
WIDE_PERIOD = "20000101..20991231"
MAX_PER_PAGE = 100
MAX_PAGES = 100_000  # a vendor that never ends its pages cannot keep a poll running forever

SETTINGS = (
    Setting("base_url", "url", default="https://moneybird.com/api/v2"),
    Setting("administration_id", "text", required=True),
    Setting("client_id", "text"),
    Setting("oauth_url", "url", default="https://moneybird.com/oauth"),
    Setting("redirect_uri", "url"),
    Setting("period", "text", default=WIDE_PERIOD),
    Setting("per_page", "integer", default=MAX_PER_PAGE),
)


def secrets(settings: Mapping[str, Any]) -> tuple[str, ...]:
    return ("CLIENT_SECRET",) if settings.get("client_id") else ("TOKEN",)


class Moneybird:
    vendor = "moneybird"

    def __init__(self, ctx: ConnectorContext, transport: httpx.BaseTransport | None = None):
        s = ctx.settings
        self.ctx = ctx
        self.base = str(s["base_url"]).rstrip("/")
        self.administration_id = str(s["administration_id"])
        self.period = str(s.get("period") or WIDE_PERIOD)
        self.per_page = min(MAX_PER_PAGE, int(s.get("per_page") or MAX_PER_PAGE))
        self.http = VendorHttp.for_connector("Moneybird", ctx, transport)
        self.session: OAuthSession | None = None
        if s.get("client_id"):
            oauth = str(s["oauth_url"]).rstrip("/")
            client = OAuthClient(
                authorize_url=f"{oauth}/authorize",
                token_url=f"{oauth}/token",
                client_id=str(s["client_id"]),
                client_secret=require_secret(ctx, "CLIENT_SECRET"),
                scope="sales_invoices settings",
            )
            self.session = OAuthSession("Moneybird", client, ctx.tokens, self.http, ctx.clock)

    # -- authorisation ------------------------------------------------------------------------------------

    def authorization_url(self, redirect_uri: str, state: str) -> str | None:
        return self.session.authorization_url(redirect_uri, state) if self.session else None

    def complete_authorization(self, code: str, redirect_uri: str) -> None:
        if self.session is None:
            raise PermanentVendorError("Moneybird: this administration uses a personal token; nothing to exchange")
        self.session.exchange_code(code, redirect_uri)

    def check(self) -> str:
        body = self._get_json(f"{self.base}/administrations.json", {})
        for adm in body if isinstance(body, list) else []:
            if isinstance(adm, dict) and str(adm.get("id")) == self.administration_id:
                return f"Moneybird administration {adm.get('name')!r} ({self.administration_id}) is reachable"
        raise PermanentVendorError(
            f"Moneybird: the credentials work, but administration {self.administration_id} is not among the "
            "administrations they can reach"
        )

    def close(self) -> None:
        self.http.close()

    def fetch_pdf(self, url: str, sink: BinaryIO) -> None:
        """``download_pdf`` (with the token) answers a redirect to a short-lived link (about 30 s), fetched
        without the token (it goes to another host). A link that has expired meanwhile (403, e.g. after
        waiting out a rate limit) is asked for once more. An answer with the file itself is taken as well."""
        for attempt in (1, 2):
            response = self._get(url, {}, accept=(200, *REDIRECTS))
            target = redirect_target(response)
            if target is None:
                if len(response.content) > MAX_PDF_BYTES:
                    raise PermanentVendorError(f"Moneybird: the PDF at {url} is larger than {MAX_PDF_BYTES} bytes")
                sink.write(response.content)
                return
            got = self.http.download(target, sink, max_bytes=MAX_PDF_BYTES, headers={"Accept": "application/pdf"})
            if got.status_code == 200:
                return
            if got.status_code != 403 or attempt == 2:
                raise PermanentVendorError(f"Moneybird: the PDF link answered {describe(got, 120)}")

    # -- the poll -----------------------------------------------------------------------------------------

    def fetch_snapshot(self) -> Snapshot:
        snapshot = Snapshot(self.ctx.administration)
        entries: list[Entry] = []
        for invoice in self.open_invoices():
            entry = self.map_invoice(invoice, snapshot)
            if entry is not None:
                entries.append(entry)
        snapshot.entries = entries
        snapshot.rows = len(entries)
        snapshot.detected = {"source": "moneybird", "requests": str(self.http.requests)}
        return snapshot

    def open_invoices(self) -> Iterator[dict[str, Any]]:
        first = f"{self.base}/{self.administration_id}/sales_invoices.json"
        query = {"filter": f"state:{OPEN_STATES},period:{self.period}", "per_page": str(self.per_page)}
        url, params = first, {**query, "page": "1"}
        for page in range(1, MAX_PAGES + 1):
            response = self._get(url, params)
            items = self.http.json(response)
            if not isinstance(items, list):
                raise TransientVendorError(f"Moneybird: a page of sales invoices is not a list: {describe(response)}")
            yield from (item for item in items if isinstance(item, dict))
            following = response.links.get("next", {}).get("url")
            if following:
                url, params = following, {}  # the link carries the whole query: follow it unchanged
            elif len(items) < self.per_page:
                return
            else:
                url, params = first, {**query, "page": str(page + 1)}
        raise TransientVendorError(f"Moneybird: more than {MAX_PAGES} pages of invoices; refusing to go on")

    def map_invoice(self, inv: Mapping[str, Any], snapshot: Snapshot) -> Entry | None:
        number = text(inv.get("invoice_id"))
        embedded = inv.get("contact")
        contact: Mapping[str, Any] = embedded if isinstance(embedded, dict) else {}
        if number is None:
            snapshot.problems.append(
                notice("draft_skipped", f"Moneybird sales invoice {inv.get('id')} has no invoice number (a draft)")
            )
            return None
        code = text(contact.get("customer_id")) or text(contact.get("id")) or text(inv.get("contact_id"))
        if code is None:
            snapshot.problems.append(notice("no_contact", f"Moneybird invoice {number} has no contact; skipped"))
            return None
        company = text(contact.get("company_name"))
        debtor = Debtor(
            code=code,
            company_name=company,
            is_company=company is not None,
            firstname=text(contact.get("firstname")),
            lastname=text(contact.get("lastname")),
            email=text(contact.get("email")),
            invoice_email=text(contact.get("send_invoices_to_email")),
            phone=text(contact.get("phone")),
            street_1=text(contact.get("address1")),
            street_2=text(contact.get("address2")),
            postal_code=text(contact.get("zipcode")),
            city=text(contact.get("city")),
            country_code=upper(contact.get("country")),
            language_code=lower(inv.get("language")),
            vat_number=text(contact.get("tax_number")),
            coc_number=text(contact.get("chamber_of_commerce")),
            iban=text(contact.get("sepa_iban")) or text(contact.get("bank_account")),
        )
        try:
            invoice = Invoice(
                number=number,
                debtor_code=code,
                invoice_date=iso_date(inv.get("invoice_date")),
                due_date=iso_date(inv.get("due_date")),
                amount_total=money(inv.get("total_price_incl_tax")),
                amount_open=money(inv.get("total_unpaid")),
                currency=upper(inv.get("currency")) or "",
                description=text(inv.get("reference")),
                payment_reference=text(inv.get("payment_reference")),
                sent_at=iso_date(inv["sent_at"]) if text(inv.get("sent_at")) else None,
                pdf_url=self._pdf_url(inv),
            )
        except (ValueError, KeyError) as exc:
            raise PermanentVendorError(f"Moneybird: invoice {number} has a value we cannot read: {exc}") from exc
        return Entry(0, debtor, invoice)

    def _pdf_url(self, inv: Mapping[str, Any]) -> str | None:
        record_id = text(inv.get("id"))
        if record_id is None:
            return None
        return f"{self.base}/{self.administration_id}/sales_invoices/{record_id}/download_pdf"

    # -- HTTP ---------------------------------------------------------------------------------------------

    def _get_json(self, url: str, params: Mapping[str, str]) -> Any:
        return self.http.json(self._get(url, params))

    def _get(self, url: str, params: Mapping[str, str], accept: tuple[int, ...] = (200,)) -> httpx.Response:
        token = self._token()
        response = self.http.send("GET", url, params=params or None, headers=self._headers(token))
        if response.status_code == 401 and self.session is not None:
            token = self.session.access_token(rejected=token)
            response = self.http.send("GET", url, params=params or None, headers=self._headers(token))
        if response.status_code in accept:
            return response
        raise self._error(response)

    def _token(self) -> str:
        if self.session is not None:
            return self.session.access_token()
        return require_secret(self.ctx, "TOKEN")

    @staticmethod
    def _headers(token: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {token}", "Accept": "application/json"}

    def _error(self, response: httpx.Response) -> Exception:
        message = describe(response)
        try:
            body = response.json()
        except ValueError:
            body = None
        if isinstance(body, dict) and body.get("error"):
            message = f"HTTP {response.status_code}: {body['error']}"
        where = str(response.request.url).split("?", 1)[0]
        if response.status_code == 401:
            hint = "run connect again" if self.session else "check the TOKEN secret"
            return AuthorizationError(f"Moneybird refused the credentials ({message}) at {where}; {hint}")
        return PermanentVendorError(f"Moneybird: {message} at {where}")


def build(ctx: ConnectorContext) -> Connector:
    return Moneybird(ctx)


VENDOR = Vendor("moneybird", "Moneybird", SETTINGS, secrets, build)
