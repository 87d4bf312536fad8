"""Twinfield (SPEC.md §2): OpenID Connect tokens, SOAP ``ProcessXmlString``, browse data and debtor dimensions.

Authorisation is the OAuth code flow on ``login_url`` (client credentials as HTTP Basic, a ``nonce``, the
``twf.*`` scopes); the organisation's cluster comes from ``accesstokenvalidation`` and is kept with the
tokens (``TokenSet.extra``). Every SOAP call carries ``AccessToken`` and ``CompanyCode`` in its header. A
token the cluster refuses (a SOAP fault "Access denied. Token invalid", code 354) is refreshed once.

The open items come from browse data (code ``100``, Debiteurenkaart; ``browse_code`` switches to Twinfield's
own ``130_3``): the lines with payment status ``available`` and then ``proposed`` (Twinfield's best practice;
anything else is paid), optionally one book year at a time from ``first_year`` (large browses time out).
Lines are post-filtered on status and a non-zero open value as well. Each debtor with open items is read
(``read/dimensions`` DEB). ProcessXml errors are ``result="0"`` documents inside a successful answer: a
browse error fails the run, a debtor that cannot be read keeps the name from the browse with a warning.
"""

from __future__ import annotations

import re
import secrets as token_secrets
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace
from datetime import date
from decimal import Decimal
from typing import Any, BinaryIO
from urllib.parse import urlsplit

import httpx
from lxml import etree

from connectors.base import (
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
from connectors.soap import CONTENT_TYPE, Element, SoapFault, body_child, element, envelope, is_fault, parse_xml
from connectors.values import compact_date, money, text, upper
from gateway.records import Debtor, Entry, Invoice, Snapshot, notice, warning

VENDOR_NAME = "Twinfield"
TWF_NS = "http://www.twinfield.com/"
SCOPE = "openid offline_access twf.organisation twf.organisationUser twf.user"
OPEN_STATUSES = ("available", "proposed")
TOKEN_FAULT = re.compile(r"token|logon credentials are not valid|\b354\b", re.IGNORECASE)
TRUSTED_CLUSTER_DOMAIN = "twinfield.com"
COLUMNS: tuple[tuple[str, str], ...] = (
    ("fin.trs.head.number", "Boekst.nr."),
    ("fin.trs.head.date", "Boekdatum"),
    ("fin.trs.line.dim2", "Debiteur"),
    ("fin.trs.line.dim2name", "Naam"),
    ("fin.trs.line.invnumber", "Factuurnr."),
    ("fin.trs.line.datedue", "Vervaldatum"),
    ("fin.trs.head.curcode", "Valuta"),
    ("fin.trs.line.valuesigned", "Bedrag"),
    ("fin.trs.line.openvaluesigned", "Openstaand"),
    ("fin.trs.line.matchstatus", "Betaalstatus"),
)

SETTINGS = (
    Setting("login_url", "url", default="https://login.twinfield.com"),
    Setting("company_code", "text", required=True),
    Setting("client_id", "text", required=True),
    Setting("redirect_uri", "url"),
    Setting("browse_code", "text", default="100"),
    Setting("first_year", "integer"),
)


def secrets(settings: Mapping[str, Any]) -> tuple[str, ...]:
    return ("CLIENT_SECRET",)


@dataclass
class _Item:
    number: str
    debtor: str
    debtor_name: str | None
    invoice_date: date
    due_date: date
    currency: str
    total: Decimal
    open: Decimal


class Twinfield:
    vendor = "twinfield"

    def __init__(self, ctx: ConnectorContext, transport: httpx.BaseTransport | None = None):
        s = ctx.settings
        self.ctx = ctx
        self.login = str(s["login_url"]).rstrip("/")
        self.company = str(s["company_code"]).strip()
        self.browse_code = str(s.get("browse_code") or "100").strip()
        self.first_year = int(s["first_year"]) if s.get("first_year") else None
        self.http = VendorHttp.for_connector(VENDOR_NAME, ctx, transport)
        self.client = OAuthClient(
            authorize_url=f"{self.login}/auth/authentication/connect/authorize",
            token_url=f"{self.login}/auth/authentication/connect/token",
            client_id=str(s["client_id"]),
            client_secret=require_secret(ctx, "CLIENT_SECRET"),
            scope=SCOPE,
            basic_auth=True,
        )
        self.session = OAuthSession(VENDOR_NAME, self.client, ctx.tokens, self.http, ctx.clock)

    # -- authorisation ------------------------------------------------------------------------------------

    def authorization_url(self, redirect_uri: str, state: str) -> str | None:
        return self.session.authorization_url(redirect_uri, state, nonce=token_secrets.token_urlsafe(16))

    def complete_authorization(self, code: str, redirect_uri: str) -> None:
        tokens = self.session.exchange_code(code, redirect_uri)
        self._discover_cluster(tokens.access_token)

    def check(self) -> str:
        offices = self.process(element("", "list", [("type", "offices")]), "the list of offices")
        names = {text(o.text): o.get("name") for o in offices.iter("office")}
        if self.company not in names:
            known = ", ".join(sorted(c for c in names if c)) or "none"
            raise PermanentVendorError(
                f"Twinfield: the authorisation works, but company {self.company} is not among its offices ({known})"
            )
        tokens = self.ctx.tokens.load()
        organisation = tokens.extra.get("organisation") if tokens else None
        return (
            f"Twinfield organisation {organisation or '?'} is authorised; company {self.company} "
            f"({names[self.company] or 'no name'}) is reachable"
        )

    def close(self) -> None:
        self.http.close()

    def fetch_pdf(self, url: str, sink: BinaryIO) -> None:
        """No PDF endpoint is known (SPEC.md §2.5): Twinfield invoices never carry a ``pdf_url``."""
        raise PermanentVendorError("Twinfield: invoice PDFs cannot be downloaded from Twinfield")

    # -- the poll -----------------------------------------------------------------------------------------

    def fetch_snapshot(self) -> Snapshot:
        snapshot = Snapshot(self.ctx.administration)
        items = self._open_items(snapshot)
        debtors = {code: self._debtor(code, name, snapshot) for code, name in _debtor_names(items.values()).items()}
        entries = []
        for item in items.values():
            invoice = Invoice(
                number=item.number,
                debtor_code=item.debtor,
                invoice_date=item.invoice_date,
                due_date=item.due_date,
                amount_total=item.total,
                amount_open=item.open,
                currency=item.currency,
            )
            entries.append(Entry(0, debtors[item.debtor], invoice))
        snapshot.entries = entries
        snapshot.rows = len(entries)
        snapshot.detected = {"source": "twinfield", "requests": str(self.http.requests)}
        return snapshot

    def _open_items(self, snapshot: Snapshot) -> dict[str, _Item]:
        """Open lines by invoice number; lines of one invoice (payment terms) are added up."""
        items: dict[str, _Item] = {}
        for row in self._browse_rows():
            status = (row.get("fin.trs.line.matchstatus") or "").strip().lower()
            number = text(row.get("fin.trs.line.invnumber"))
            debtor = text(row.get("fin.trs.line.dim2"))
            if status not in OPEN_STATUSES:
                continue
            try:
                amount_open = money(row.get("fin.trs.line.openvaluesigned"))
                total = money(row.get("fin.trs.line.valuesigned"))
                invoice_date = compact_date(row.get("fin.trs.head.date"))
                due = text(row.get("fin.trs.line.datedue"))
                due_date = compact_date(due) if due else invoice_date
            except ValueError as exc:
                raise PermanentVendorError(
                    f"Twinfield: browse line {row.get('fin.trs.head.number')} cannot be read: {exc}"
                ) from exc
            if amount_open == 0:
                continue
            if number is None or debtor is None:
                snapshot.problems.append(
                    notice(
                        "not_an_invoice",
                        f"open line {row.get('fin.trs.head.number')} has no invoice number or debtor "
                        f"(an unmatched payment?); skipped",
                    )
                )
                continue
            if number in items:
                items[number].open += amount_open
                items[number].total += total
                continue
            items[number] = _Item(
                number=number,
                debtor=debtor,
                debtor_name=text(row.get("fin.trs.line.dim2name")),
                invoice_date=invoice_date,
                due_date=due_date,
                currency=upper(row.get("fin.trs.head.curcode")) or "",
                total=total,
                open=amount_open,
            )
        return items

    def _browse_rows(self) -> Iterator[dict[str, str]]:
        years: list[int | None] = [None]
        if self.first_year is not None:
            years = list(range(self.first_year, self.ctx.clock.now().year + 2))
        seen: set[tuple[str, ...]] = set()
        for status in OPEN_STATUSES:
            for year in years:
                what = f"browse {self.browse_code} ({status}{f', {year}' if year else ''})"
                result = self.process(self._browse_request(status, year), what)
                rows = result.findall("tr")
                total = result.get("total")
                if total is not None and total.strip().isdigit() and int(total) > len(rows):
                    raise PermanentVendorError(
                        f"Twinfield: {what} returned {len(rows)} of {total} lines and cannot be paged; "
                        "set first_year to browse one book year at a time"
                    )
                for tr in rows:
                    key = tuple(k.text or "" for k in tr.iterfind("key/*"))
                    if key and key in seen:  # a line in both answers: its status changed in between
                        continue
                    seen.add(key)
                    yield {td.get("field", ""): (td.text or "") for td in tr.iterfind("td")}

    def _browse_request(self, status: str, year: int | None) -> Element:
        columns = etree.Element("columns", code=self.browse_code)
        etree.SubElement(etree.SubElement(columns, "sort"), "field").text = "fin.trs.line.invnumber"
        if year is not None:
            _column(columns, "fin.trs.head.yearperiod", "Periode", ("between", f"{year}/00", f"{year}/99"))
        for field, label in COLUMNS:
            condition = ("equal", status, None) if field == "fin.trs.line.matchstatus" else None
            _column(columns, field, label, condition)
        return columns

    def _debtor(self, code: str, browse_name: str | None, snapshot: Snapshot) -> Debtor:
        request = element(
            "", "read", [("type", "dimensions"), ("office", self.company), ("dimtype", "DEB"), ("code", code)]
        )
        try:
            dim = self.process(request, f"debtor {code}")
        except ResultError as exc:
            snapshot.problems.append(
                warning("debtor_unreadable", f"{exc}; the debtor keeps the name from the open items", column="debtor")
            )
            return Debtor(code=code, company_name=browse_name)
        return map_debtor(dim, code, browse_name)

    # -- SOAP ---------------------------------------------------------------------------------------------

    def process(self, request: Element, what: str) -> Element:
        """Send one ProcessXmlString request; the answer's document, or an error for ``result="0"``."""
        xml = etree.tostring(request, encoding="unicode")
        token = self.session.access_token()
        try:
            answer = self._post(token, xml)
        except SoapFault as fault:
            if not TOKEN_FAULT.search(fault.text):
                raise
            token = self.session.access_token(rejected=token)
            try:
                answer = self._post(token, xml)
            except SoapFault as again:
                if TOKEN_FAULT.search(again.text):
                    raise AuthorizationError(
                        f"Twinfield refused the access token after a refresh ({again.text}); run connect again"
                    ) from None
                raise
        result = answer.findtext(f"{{{TWF_NS}}}ProcessXmlStringResult")
        if not result:
            raise TransientVendorError(f"Twinfield: the answer to {what} has no ProcessXmlStringResult")
        document = parse_xml(result, VENDOR_NAME, f"the answer to {what}")
        _raise_result_errors(document, what)
        return document

    def _post(self, token: str, xml_request: str) -> Element:
        header = element(TWF_NS, "Header", [("AccessToken", token), ("CompanyCode", self.company)])
        nil = etree.SubElement(header, f"{{{TWF_NS}}}CompanyId")
        nil.set("{http://www.w3.org/2001/XMLSchema-instance}nil", "true")
        body = element(TWF_NS, "ProcessXmlString", [("xmlRequest", xml_request)])
        response = self.http.send(
            "POST",
            f"{self._cluster()}/webservices/processxml.asmx",
            content=envelope(body, header),
            headers={"Content-Type": CONTENT_TYPE, "SOAPAction": f'"{TWF_NS}ProcessXmlString"'},
            final=is_fault,
        )
        if response.status_code in (401, 403):
            raise SoapFault(VENDOR_NAME, "ProcessXmlString", f"HTTP {response.status_code} (token refused)")
        return body_child(response, VENDOR_NAME, "ProcessXmlString")

    def _cluster(self) -> str:
        tokens = self.ctx.tokens.load()
        cluster = tokens.extra.get("cluster_url") if tokens else None
        if cluster:
            return cluster
        return self._discover_cluster(self.session.access_token())

    def _discover_cluster(self, access_token: str) -> str:
        """``accesstokenvalidation`` names the organisation's cluster; it is stored with the tokens."""
        response = self.http.send(
            "GET",
            f"{self.login}/auth/authentication/connect/accesstokenvalidation",
            params={"token": access_token},
            auth=(self.client.client_id, self.client.client_secret),
            headers={"Accept": "application/json"},
        )
        if response.status_code != 200:
            raise AuthorizationError(
                f"Twinfield: the access token did not validate ({describe(response, 120)}); run connect again"
            )
        claims = self.http.json(response)
        cluster = str(claims.get("twf.clusterUrl") or "").rstrip("/") if isinstance(claims, dict) else ""
        if not self._trusted(cluster):
            raise PermanentVendorError(f"Twinfield: the token validation names no usable cluster ({cluster!r})")
        organisation = str(claims.get("twf.organisationCode") or "")

        def remember(current: Any) -> Any:
            if current is None or current.access_token != access_token:
                return None
            return replace(current, extra={**current.extra, "cluster_url": cluster, "organisation": organisation})

        self.ctx.tokens.update(remember)
        return cluster

    def _trusted(self, url: str) -> bool:
        """The access token goes only to a Twinfield host, or to the login host itself (a local fake)."""
        parts = urlsplit(url)
        host = parts.hostname or ""
        if parts.scheme == "https" and (host == TRUSTED_CLUSTER_DOMAIN or host.endswith(f".{TRUSTED_CLUSTER_DOMAIN}")):
            return True
        return parts.scheme in ("http", "https") and host != "" and host == urlsplit(self.login).hostname


class ResultError(PermanentVendorError):
    """A ProcessXml document with ``result="0"``."""


def _raise_result_errors(document: Element, what: str) -> None:
    """``result="0"`` on the root, or elements with ``msgtype="error"`` (SPEC.md §2.7)."""
    messages = [m for m in (el.get("msg") for el in document.iter() if el.get("msgtype") == "error") if m]
    if document.get("result") == "0" and not messages and document.get("msg"):
        messages = [str(document.get("msg"))]
    if document.get("result") == "0" or messages:
        detail = "; ".join(" ".join(m.split()) for m in messages[:5]) or "no message"
        raise ResultError(f"Twinfield refused {what}: {detail}")


def _column(parent: Element, field: str, label: str, condition: tuple[str, str, str | None] | None) -> None:
    column = etree.SubElement(parent, "column")
    for name, value in (("field", field), ("label", label), ("visible", "true")):
        etree.SubElement(column, name).text = value
    if condition is not None:
        operator, low, high = condition
        etree.SubElement(column, "ask").text = "true"
        etree.SubElement(column, "operator").text = operator
        etree.SubElement(column, "from").text = low
        if high is not None:
            etree.SubElement(column, "to").text = high


def _debtor_names(items: Any) -> dict[str, str | None]:
    names: dict[str, str | None] = {}
    for item in items:
        names.setdefault(item.debtor, item.debtor_name)
    return names


def map_debtor(dim: Element, code: str, browse_name: str | None) -> Debtor:
    """A ``<dimension>`` (SPEC.md §2.8): the invoice address (else the default, else the first), the
    default bank account's IBAN; field1 is the attention line, field2/field3 the street lines."""
    addresses = dim.findall("addresses/address")
    address = next(
        (a for a in addresses if a.get("type") == "invoice"),
        next((a for a in addresses if a.get("default") == "true"), addresses[0] if addresses else None),
    )
    banks = dim.findall("banks/bank")
    bank = next((b for b in banks if b.get("default") == "true"), banks[0] if banks else None)

    def at(node: Element | None, path: str) -> str | None:
        return text(node.findtext(path)) if node is not None else None

    reminder = text(dim.findtext("creditmanagement/reminderemail"))
    iban = at(bank, "iban")
    return Debtor(
        code=text(dim.findtext("code")) or code,
        company_name=text(dim.findtext("name")) or browse_name,
        email=at(address, "email") or reminder,
        reminder_email=reminder,
        phone=at(address, "telephone"),
        street_1=at(address, "field2"),
        street_2=at(address, "field3"),
        postal_code=at(address, "postcode"),
        city=at(address, "city"),
        country_code=upper(at(address, "country")),
        vat_number=text(dim.findtext("vatnumber")),
        coc_number=text(dim.findtext("cocnumber")),
        iban=iban.replace(" ", "").upper() if iban else None,
    )


def build(ctx: ConnectorContext) -> Connector:
    return Twinfield(ctx)


VENDOR = Vendor("twinfield", VENDOR_NAME, SETTINGS, secrets, build)
