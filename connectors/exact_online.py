"""Exact Online REST (SPEC.md §1): ReceivablesList + accounts + bank accounts + sales-invoice totals.

OAuth code flow with a rotating refresh token: every refresh goes through the token store's lock and is
committed before use; no token request within 570 s of the previous one. Pages are followed through the
absolute ``__next`` URL, unchanged and one at a time. Dates are ``/Date(ms)/``, codes padded: everything is
trimmed. Accounts, bank accounts and invoice totals are fetched only for the open items, in batches of
OData ``or`` filters that keep each URL under Exact's 6000-character limit.

An invoice's PDF: the sales invoice's ``Document`` (a GUID, often null) makes its ``pdf_url`` the query of that
document's attachments; ``fetch_pdf`` asks it (one request), takes the PDF attachment's ``Url`` and downloads
it with ``&Download=1`` (without it Exact answers a viewer page), both with the bearer token.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal
from typing import Any, BinaryIO
from urllib.parse import quote, urlencode

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
from connectors.http import VendorHttp, describe
from connectors.oauth import OAuthClient, OAuthSession
from connectors.values import lower, money, ms_date, text, upper
from gateway.records import Debtor, Entry, Invoice, Snapshot, notice, warning

MIN_REFRESH_AGE = timedelta(seconds=570)
MAX_URL = 6000
MAX_PAGES = 100_000
RECEIVABLE_FIELDS = (
    "HID,AccountId,AccountCode,AccountName,Amount,CurrencyCode,Description,DueDate,InvoiceDate,InvoiceNumber,YourRef"
)
ACCOUNT_FIELDS = (
    "ID,Code,Name,Email,Phone,PhoneExtension,AddressLine1,AddressLine2,AddressLine3,Postcode,City,Country,"
    "Language,VATNumber,ChamberOfCommerce"
)

SETTINGS = (
    Setting("base_url", "url", default="https://start.exactonline.nl"),
    Setting("division", "integer", required=True),
    Setting("client_id", "text", required=True),
    Setting("redirect_uri", "url"),
)


def secrets(settings: Mapping[str, Any]) -> tuple[str, ...]:
    return ("CLIENT_SECRET",)


@dataclass
class _Item:
    number: str
    account_id: str
    account_code: str
    account_name: str | None
    amount: Decimal
    currency: str
    invoice_date: date
    due_date: date
    description: str | None
    your_ref: str | None


class ExactOnline:
    vendor = "exact_online"

    def __init__(self, ctx: ConnectorContext, transport: httpx.BaseTransport | None = None):
        s = ctx.settings
        self.ctx = ctx
        self.base = str(s["base_url"]).rstrip("/")
        self.division = int(s["division"])
        self.http = VendorHttp.for_connector("Exact Online", ctx, transport)
        client = OAuthClient(
            authorize_url=f"{self.base}/api/oauth2/auth",
            token_url=f"{self.base}/api/oauth2/token",
            client_id=str(s["client_id"]),
            client_secret=require_secret(ctx, "CLIENT_SECRET"),
            min_refresh_age=MIN_REFRESH_AGE,
        )
        self.session = OAuthSession("Exact Online", client, ctx.tokens, self.http, ctx.clock)

    # -- authorisation ------------------------------------------------------------------------------------

    def authorization_url(self, redirect_uri: str, state: str) -> str | None:
        return self.session.authorization_url(redirect_uri, state, force_login="0")

    def complete_authorization(self, code: str, redirect_uri: str) -> None:
        self.session.exchange_code(code, redirect_uri)

    def check(self) -> str:
        body = self._get_json(f"{self.base}/api/v1/current/Me", {"$select": "CurrentDivision,FullName"})
        results = _results(body)
        me = results[0] if results else {}
        return (
            f"Exact Online user {me.get('FullName')!r} is authorised (current division {me.get('CurrentDivision')}); "
            f"the gateway reads division {self.division}"
        )

    def close(self) -> None:
        self.http.close()

    def fetch_pdf(self, url: str, sink: BinaryIO) -> None:
        rows = _results(self._get_json(url, {}))
        urls = [(text(r.get("FileName")) or "", text(r.get("Url"))) for r in rows]
        found = [u for name, u in urls if u and name.lower().endswith(".pdf")] or [u for _, u in urls if u]
        if not found:
            raise PermanentVendorError("Exact Online: the invoice's document has no attachment to download")
        target = f"{found[0]}{'&' if '?' in found[0] else '?'}Download=1"
        token = self.session.access_token()
        got = self.http.download(target, sink, max_bytes=MAX_PDF_BYTES, headers=_headers(token, "application/pdf"))
        if got.status_code == 401:
            token = self.session.access_token(rejected=token)
            got = self.http.download(target, sink, max_bytes=MAX_PDF_BYTES, headers=_headers(token, "application/pdf"))
        if got.status_code != 200:
            raise _error(got)

    # -- the poll -----------------------------------------------------------------------------------------

    def fetch_snapshot(self) -> Snapshot:
        snapshot = Snapshot(self.ctx.administration)
        items = self._open_items(snapshot)
        accounts = self._by_key(self._accounts({i.account_id for i in items.values()}), "ID")
        banks = self._main_bank_accounts(set(accounts))
        totals, documents = self._sales_invoices(list(items))
        entries = []
        for item in items.values():
            account = accounts.get(item.account_id.lower())
            debtor = self._debtor(item, account, banks.get(item.account_id.lower()))
            total = totals.get(item.number)
            if total is None:
                total = item.amount
                snapshot.problems.append(
                    warning(
                        "total_unknown",
                        f"invoice {item.number} has no sales invoice in Exact Online; its total is taken to be "
                        f"the open amount ({item.amount})",
                        column="invoice_total_amount_inc_vat",
                    )
                )
            invoice = Invoice(
                number=item.number,
                debtor_code=debtor.code,
                invoice_date=item.invoice_date,
                due_date=item.due_date,
                amount_total=total,
                amount_open=item.amount,
                currency=item.currency,
                description=item.description,
                order_number=item.your_ref,
                pdf_url=self._attachments_url(documents[item.number]) if item.number in documents else None,
            )
            entries.append(Entry(0, debtor, invoice))
        snapshot.entries = entries
        snapshot.rows = len(entries)
        snapshot.detected = {"source": "exact_online", "requests": str(self.http.requests)}
        return snapshot

    def _open_items(self, snapshot: Snapshot) -> dict[str, _Item]:
        """ReceivablesList rows by invoice number; several lines of one invoice (terms) are added up."""
        items: dict[str, _Item] = {}
        url = f"{self.base}/api/v1/{self.division}/read/financial/ReceivablesList"
        for row in self._pages(url, {"$select": RECEIVABLE_FIELDS}):
            number = text(row.get("InvoiceNumber"))
            account_id = text(row.get("AccountId"))
            if number is None or account_id is None:
                snapshot.problems.append(
                    notice("not_an_invoice", f"open item {row.get('HID')} has no invoice number or account; skipped")
                )
                continue
            try:
                amount = money(row.get("Amount"))
                item = _Item(
                    number=number,
                    account_id=account_id,
                    account_code=text(row.get("AccountCode")) or account_id,
                    account_name=text(row.get("AccountName")),
                    amount=amount,
                    currency=upper(row.get("CurrencyCode")) or "",
                    invoice_date=ms_date(row.get("InvoiceDate")),
                    due_date=ms_date(row.get("DueDate") or row.get("InvoiceDate")),
                    description=text(row.get("Description")),
                    your_ref=text(row.get("YourRef")),
                )
            except ValueError as exc:
                raise PermanentVendorError(f"Exact Online: open item {row.get('HID')} cannot be read: {exc}") from exc
            if number in items:
                items[number].amount += amount
            else:
                items[number] = item
        return items

    def _accounts(self, ids: set[str]) -> Iterator[dict[str, Any]]:
        url = f"{self.base}/api/v1/{self.division}/bulk/CRM/Accounts"
        for clause in _or_batches(url, [f"ID eq guid'{i}'" for i in sorted(ids)]):
            yield from self._pages(url, {"$select": ACCOUNT_FIELDS, "$filter": clause})

    def _main_bank_accounts(self, ids: set[str]) -> dict[str, str]:
        url = f"{self.base}/api/v1/{self.division}/crm/BankAccounts"
        out: dict[str, str] = {}
        for clause in _or_batches(url, [f"Account eq guid'{i}'" for i in sorted(ids)], prefix="Main eq true and "):
            for row in self._pages(url, {"$select": "Account,BankAccount,Main", "$filter": clause}):
                account, number = text(row.get("Account")), text(row.get("BankAccount"))
                if account and number and row.get("Main") is not False:
                    out[account.lower()] = number.replace(" ", "")
        return out

    def _sales_invoices(self, numbers: list[str]) -> tuple[dict[str, Decimal], dict[str, str]]:
        """Totals (``AmountFC``) and linked documents (``Document`` GUIDs) by invoice number."""
        url = f"{self.base}/api/v1/{self.division}/salesinvoice/SalesInvoices"
        totals: dict[str, Decimal] = {}
        documents: dict[str, str] = {}
        numeric = [n for n in numbers if n.isdigit()]
        for clause in _or_batches(url, [f"InvoiceNumber eq {n}" for n in numeric]):
            for row in self._pages(url, {"$select": "InvoiceNumber,AmountFC,Document", "$filter": clause}):
                number = text(row.get("InvoiceNumber"))
                if number is None:
                    continue
                if row.get("AmountFC") is not None:
                    totals[number] = money(row["AmountFC"])
                document = text(row.get("Document"))
                if document:
                    documents[number] = document
        return totals, documents

    def _attachments_url(self, document: str) -> str:
        query = {"$filter": f"Document eq guid'{document}'", "$select": "FileName,Url"}
        return f"{self.base}/api/v1/{self.division}/documents/DocumentAttachments?{urlencode(query, quote_via=quote)}"

    def _debtor(self, item: _Item, account: Mapping[str, Any] | None, iban: str | None) -> Debtor:
        if account is None:
            return Debtor(code=item.account_code, company_name=item.account_name, iban=iban)
        phone = text(account.get("Phone"))
        extension = text(account.get("PhoneExtension"))
        street_2 = " ".join(x for x in (text(account.get("AddressLine2")), text(account.get("AddressLine3"))) if x)
        return Debtor(
            code=text(account.get("Code")) or item.account_code,
            company_name=text(account.get("Name")) or item.account_name,
            email=text(account.get("Email")),
            phone=f"{phone} {extension}" if phone and extension else phone,
            street_1=text(account.get("AddressLine1")),
            street_2=street_2 or None,
            postal_code=text(account.get("Postcode")),
            city=text(account.get("City")),
            country_code=upper(account.get("Country")),
            language_code=lower(account.get("Language")),
            vat_number=text(account.get("VATNumber")),
            coc_number=text(account.get("ChamberOfCommerce")),
            iban=iban,
        )

    @staticmethod
    def _by_key(rows: Iterable[dict[str, Any]], key: str) -> dict[str, dict[str, Any]]:
        return {str(r[key]).lower(): r for r in rows if r.get(key)}

    # -- HTTP ---------------------------------------------------------------------------------------------

    def _pages(self, url: str, params: Mapping[str, str]) -> Iterator[dict[str, Any]]:
        """Every row of a collection: the first page with ``params``, then each ``__next`` URL unchanged."""
        next_url: str | None = url
        query: Mapping[str, str] = params
        for _ in range(MAX_PAGES):
            if next_url is None:
                return
            body = self._get_json(next_url, query)
            yield from _results(body)
            d = body.get("d") if isinstance(body, dict) else None
            next_url = d.get("__next") if isinstance(d, dict) else None
            query = {}
        raise TransientVendorError(f"Exact Online: more than {MAX_PAGES} pages; refusing to go on")

    def _get_json(self, url: str, params: Mapping[str, str]) -> Any:
        token = self.session.access_token()
        response = self.http.send("GET", url, params=params or None, headers=_headers(token))
        if response.status_code == 401:
            token = self.session.access_token(rejected=token)
            response = self.http.send("GET", url, params=params or None, headers=_headers(token))
        if response.status_code != 200:
            raise _error(response)
        return self.http.json(response)


def _headers(token: str, accept: str = "application/json") -> dict[str, str]:
    return {"Authorization": f"Bearer {token}", "Accept": accept}


def _results(body: Any) -> list[dict[str, Any]]:
    d = body.get("d") if isinstance(body, dict) else None
    results = d.get("results") if isinstance(d, dict) else None
    if isinstance(d, dict) and results is None:
        results = [d]  # a single entity by key: {"d": {...}}
    if not isinstance(results, list):
        raise TransientVendorError(f"Exact Online: unexpected answer shape (no d.results): {str(body)[:200]}")
    return [r for r in results if isinstance(r, dict)]


def _or_batches(url: str, clauses: list[str], prefix: str = "") -> Iterator[str]:
    """``$filter`` values joining ``clauses`` with ``or``, each short enough (URL-encoded) to keep the request
    URL, with its ``$select``, under Exact's 6000 characters."""
    budget = MAX_URL - len(url) - 700
    batch: list[str] = []
    size = len(quote(prefix, safe="")) + 6
    for clause in clauses:
        length = len(quote(clause, safe="")) + len(quote(" or ", safe=""))
        if batch and size + length > budget:
            yield _joined(batch, prefix)
            batch, size = [], len(quote(prefix, safe="")) + 6
        batch.append(clause)
        size += length
    if batch:
        yield _joined(batch, prefix)


def _joined(batch: list[str], prefix: str) -> str:
    body = " or ".join(batch)
    return f"{prefix}({body})" if prefix else body


def _error(response: httpx.Response) -> Exception:
    """OData errors carry their text in ``error.message.value`` (SPEC.md §1.7)."""
    message = describe(response)
    try:
        body = response.json()
        value = body["error"]["message"]["value"]
        if value:
            message = f"HTTP {response.status_code}: {value}"
    except (ValueError, KeyError, TypeError):
        pass
    where = str(response.request.url).split("?", 1)[0]
    if response.status_code == 401:
        return AuthorizationError(f"Exact Online refused the access token after a refresh ({message}) at {where}")
    return PermanentVendorError(f"Exact Online: {message} at {where}")


def build(ctx: ConnectorContext) -> Connector:
    return ExactOnline(ctx)


VENDOR = Vendor("exact_online", "Exact Online", SETTINGS, secrets, build)
