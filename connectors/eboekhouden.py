"""e-Boekhouden.nl SOAP (SPEC.md §4.1, §4.3): a session, the open items, the debtors, due dates and descriptions.

``OpenSession`` with the username and the two security codes (secrets ``SECURITY_CODE_1``/``_2``); every call
carries ``SessionID`` and ``SecurityCode2``; ``CloseSession`` always, also after an error. Errors arrive as
``ErrorMsg/LastErrorCode`` with HTTP 200; a session the service calls expired is reopened once.

``GetOpenPosten`` (Debiteuren) has no due date, currency or description. Debtors: one ``GetRelaties`` for all
(capped at 100), then one per code it did not return. Due dates and descriptions come from the
``FactuurVerstuurd`` mutations (``GetMutaties``, capped at 500) fetched in date windows over the open items'
dates; a window that hits the cap is halved, a single day that does is asked per invoice number. One
``GetFacturen`` over the open items' dates gives the invoicing-module invoices: their PDF (``URLPDFBestand``,
an invoice's ``pdf_url``, downloaded as it is) and, for an invoice without a usable mutation, the due date
(date + payment term); an invoice missing from it is asked for by number (should the list be capped), and
failing that its due date is its invoice date, with a warning. The currency is EUR (none is given).
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal
from typing import Any, BinaryIO

import httpx
from lxml import etree

from connectors.base import (
    MAX_PDF_BYTES,
    AuthorizationError,
    Connector,
    ConnectorContext,
    ConnectorError,
    PermanentVendorError,
    Setting,
    Vendor,
    require_secret,
)
from connectors.http import VendorHttp, describe
from connectors.soap import CONTENT_TYPE, Element, body_child, envelope, is_fault
from connectors.values import iso_date, money, text
from gateway.records import Debtor, Entry, Invoice, Snapshot, notice, warning

VENDOR_NAME = "e-Boekhouden.nl"
NS = "http://www.e-boekhouden.nl/soap"
RELATIES_CAP = 100
MUTATIES_CAP = 500
SESSION_ERROR = re.compile(r"sessi", re.IGNORECASE)
COUNTRY_NAMES = {"nederland": "NL", "belgie": "BE", "belgië": "BE", "duitsland": "DE", "frankrijk": "FR"}

SETTINGS = (
    Setting("soap_url", "url", default="https://soap.e-boekhouden.nl/soap.asmx"),
    Setting("username", "text", required=True),
)


def secrets(settings: Mapping[str, Any]) -> tuple[str, ...]:
    return ("SECURITY_CODE_1", "SECURITY_CODE_2")


@dataclass
class _Post:
    number: str
    debtor: str
    company: str | None
    invoice_date: date
    total: Decimal
    open: Decimal


@dataclass
class _Detail:
    description: str | None
    due_date: date | None
    pdf_url: str | None = None


class VendorErrorMsg(PermanentVendorError):
    def __init__(self, operation: str, code: str, description: str):
        super().__init__(f"{VENDOR_NAME}: {operation} failed: {code} {description}".strip())
        self.code = code
        self.description = description


class EBoekhouden:
    vendor = "eboekhouden"

    def __init__(self, ctx: ConnectorContext, transport: httpx.BaseTransport | None = None):
        s = ctx.settings
        self.ctx = ctx
        self.url = str(s["soap_url"])
        self.username = str(s["username"]).strip()
        self.code1 = require_secret(ctx, "SECURITY_CODE_1")
        self.code2 = require_secret(ctx, "SECURITY_CODE_2")
        self.http = VendorHttp.for_connector(VENDOR_NAME, ctx, transport)
        self.session_id: str | None = None

    # -- authorisation: fixed credentials ------------------------------------------------------------------

    def authorization_url(self, redirect_uri: str, state: str) -> str | None:
        return None

    def complete_authorization(self, code: str, redirect_uri: str) -> None:
        raise PermanentVendorError(f"{VENDOR_NAME} uses a username and security codes; there is nothing to exchange")

    def check(self) -> str:
        try:
            self._open_session()
        finally:
            self._close_session()
        return f"{VENDOR_NAME} accepted the credentials of user {self.username!r} (a session was opened and closed)"

    def close(self) -> None:
        self.http.close()

    def fetch_pdf(self, url: str, sink: BinaryIO) -> None:
        """``URLPDFBestand`` is a plain link: no session, no security code."""
        got = self.http.download(url, sink, max_bytes=MAX_PDF_BYTES, headers={"Accept": "application/pdf"})
        if got.status_code != 200:
            raise PermanentVendorError(f"{VENDOR_NAME}: the PDF link answered {describe(got, 120)}")

    # -- the poll -----------------------------------------------------------------------------------------

    def fetch_snapshot(self) -> Snapshot:
        try:
            return self._fetch()
        finally:
            self._close_session()

    def _fetch(self) -> Snapshot:
        snapshot = Snapshot(self.ctx.administration)
        posts = self._open_posts(snapshot)
        relaties = self._relaties({p.debtor for p in posts.values()})
        details = self._details(list(posts.values()))
        entries = []
        for post in posts.values():
            detail = details.get(post.number, _Detail(None, None))
            if detail.due_date is None:
                snapshot.problems.append(
                    warning(
                        "due_date_unknown",
                        f"invoice {post.number} has no payment term in e-Boekhouden.nl (no mutation or invoice); "
                        "its due date is taken to be the invoice date",
                        column="invoice_due_date",
                    )
                )
            relatie = relaties.get(post.debtor)
            debtor = map_debtor(relatie) if relatie is not None else Debtor(code=post.debtor, company_name=post.company)
            invoice = Invoice(
                number=post.number,
                debtor_code=post.debtor,
                invoice_date=post.invoice_date,
                due_date=detail.due_date or post.invoice_date,
                amount_total=post.total,
                amount_open=post.open,
                currency="EUR",
                description=detail.description,
                pdf_url=detail.pdf_url,
            )
            entries.append(Entry(0, debtor, invoice))
        snapshot.entries = entries
        snapshot.rows = len(entries)
        snapshot.detected = {"source": "eboekhouden", "requests": str(self.http.requests)}
        return snapshot

    def _open_posts(self, snapshot: Snapshot) -> dict[str, _Post]:
        result = self.call("GetOpenPosten", [_el("OpSoort", "Debiteuren")])
        posts: dict[str, _Post] = {}
        for row in result.iterfind(f"{{{NS}}}Openposten/{{{NS}}}cOpenPost"):
            number, debtor = _text(row, "MutFactuur"), _text(row, "RelCode")
            try:
                amount_open = money(_text(row, "Openstaand"))
                total = money(_text(row, "Bedrag"))
                day = iso_date(_text(row, "MutDatum"))
            except ValueError as exc:
                raise PermanentVendorError(f"{VENDOR_NAME}: open item {number} cannot be read: {exc}") from exc
            if amount_open == 0:
                continue
            if number is None or debtor is None:
                snapshot.problems.append(
                    notice("not_an_invoice", f"an open item of {day} has no invoice number or relation; skipped")
                )
                continue
            if number in posts:
                posts[number].open += amount_open
                posts[number].total += total
            else:
                posts[number] = _Post(number, debtor, _text(row, "RelBedrijf"), day, total, amount_open)
        return posts

    def _relaties(self, codes: set[str]) -> dict[str, Element]:
        """All relations in one call when there are fewer than 100; otherwise one call per missing code."""
        found = {c: r for r in self._get_relaties("") if (c := _text(r, "Code")) is not None}
        if len(found) >= RELATIES_CAP:
            for code in sorted(codes - set(found)):
                found.update({c: r for r in self._get_relaties(code) if (c := _text(r, "Code")) == code})
        return {c: r for c, r in found.items() if c in codes}

    def _get_relaties(self, code: str) -> list[Element]:
        relatie_filter = _el("cFilter", None, [_el("Trefwoord", ""), _el("Code", code), _el("ID", "0")])
        result = self.call("GetRelaties", [relatie_filter])
        return list(result.iterfind(f"{{{NS}}}Relaties/{{{NS}}}cRelatie"))

    def _details(self, posts: Sequence[_Post]) -> dict[str, _Detail]:
        wanted = {p.number for p in posts}
        details: dict[str, _Detail] = {}
        days = sorted({p.invoice_date for p in posts})
        for mutation in self._mutations(days, list(posts)):
            number = _text(mutation, "Factuurnummer")
            if number not in wanted or _text(mutation, "Soort") != "FactuurVerstuurd" or number is None:
                continue
            details[number] = _Detail(_text(mutation, "Omschrijving"), _due(mutation, "Datum", "Betalingstermijn"))
        facturen = self._facturen(days)
        for post in posts:
            detail = details.get(post.number) or _Detail(None, None)
            invoice = facturen.get(post.number)
            if invoice is None and detail.due_date is None:
                invoice = self._factuur(post)
            if invoice is not None:
                detail.pdf_url = _text(invoice, "URLPDFBestand")
                detail.due_date = detail.due_date or _due(invoice, "Datum", "Betalingstermijn")
            details[post.number] = detail
        return details

    def _facturen(self, days: list[date]) -> dict[str, Element]:
        """The invoicing-module invoices dated within the open items' dates, by number."""
        if not days:
            return {}
        children = [_el("DatumVan", f"{days[0]}T00:00:00"), _el("DatumTm", f"{days[-1]}T23:59:59")]
        result = self.call("GetFacturen", [_el("cFilter", None, children)])
        rows = result.iterfind(f"{{{NS}}}Facturen/{{{NS}}}cFactuurList")
        return {number: row for row in rows if (number := _text(row, "Factuurnummer")) is not None}

    def _mutations(self, days: list[date], posts: list[_Post]) -> Iterator[Element]:
        """The mutations of the open items' dates: windows over the distinct dates, halved at the cap."""
        windows = [days] if days else []
        while windows:
            window = windows.pop()
            rows = self._get_mutaties(window[0], window[-1], None)
            if len(rows) < MUTATIES_CAP:
                yield from rows
            elif len(window) > 1:
                middle = len(window) // 2
                windows += [window[middle:], window[:middle]]
            else:  # one day with 500 mutations or more: per invoice number
                for post in posts:
                    if post.invoice_date == window[0]:
                        yield from self._get_mutaties(window[0], window[0], post.number)

    def _get_mutaties(self, first: date, last: date, number: str | None) -> list[Element]:
        children = [_el("MutatieNr", "0"), _el("Factuurnummer", number), _el("DatumVan", f"{first}T00:00:00")]
        children.append(_el("DatumTm", f"{last}T23:59:59"))
        result = self.call("GetMutaties", [_el("cFilter", None, children)])
        return list(result.iterfind(f"{{{NS}}}Mutaties/{{{NS}}}cMutatieList"))

    def _factuur(self, post: _Post) -> Element | None:
        children = [
            _el("Factuurnummer", post.number),
            _el("Relatiecode", post.debtor),
            _el("DatumVan", f"{post.invoice_date - timedelta(days=1)}T00:00:00"),
            _el("DatumTm", f"{post.invoice_date + timedelta(days=1)}T23:59:59"),
        ]
        result = self.call("GetFacturen", [_el("cFilter", None, children)])
        for invoice in result.iterfind(f"{{{NS}}}Facturen/{{{NS}}}cFactuurList"):
            if _text(invoice, "Factuurnummer") == post.number:
                return invoice
        return None

    # -- SOAP ---------------------------------------------------------------------------------------------

    def call(self, operation: str, children: list[Element]) -> Element:
        """A data call in the session (opened when needed, reopened once when the service says it expired)."""
        for attempt in (1, 2):
            session = self._open_session()
            try:
                return self._send(operation, [_el("SessionID", session), _el("SecurityCode2", self.code2), *children])
            except VendorErrorMsg as exc:
                if attempt == 2 or not SESSION_ERROR.search(f"{exc.code} {exc.description}"):
                    raise
                self.session_id = None  # expired on the service's side: a new one
        raise AssertionError("unreachable")

    def _open_session(self) -> str:
        if self.session_id is not None:
            return self.session_id
        children = [
            _el("Username", self.username),
            _el("SecurityCode1", self.code1),
            _el("SecurityCode2", self.code2),
            _el("Source", "PAYTGW"),
        ]
        try:
            result = self._send("OpenSession", children)
        except VendorErrorMsg as exc:
            raise AuthorizationError(
                f"{VENDOR_NAME} refused the credentials of user {self.username!r} ({exc.code} {exc.description}); "
                "check the username and the secrets SECURITY_CODE_1 and SECURITY_CODE_2"
            ) from None
        session = _text(result, "SessionID")
        if session is None:
            raise PermanentVendorError(f"{VENDOR_NAME}: OpenSession answered without a SessionID")
        self.session_id = session
        return session

    def _close_session(self) -> None:
        """Always after a poll or check; a failure to close does not hide the poll's own outcome."""
        session, self.session_id = self.session_id, None
        if session is None:
            return
        with contextlib.suppress(ConnectorError):
            self._send("CloseSession", [_el("SessionID", session)], result=False)

    def _send(self, operation: str, children: list[Element], result: bool = True) -> Element:
        body = _el(operation, None, children)
        response = self.http.send(
            "POST",
            self.url,
            content=envelope(body),
            headers={"Content-Type": CONTENT_TYPE, "SOAPAction": f'"{NS}/{operation}"'},
            final=is_fault,
        )
        answer = body_child(response, VENDOR_NAME, operation)
        if not result:
            return answer
        found = answer.find(f"{{{NS}}}{operation}Result")
        if found is None:
            raise PermanentVendorError(f"{VENDOR_NAME}: the answer to {operation} has no {operation}Result")
        code = _text(found, "ErrorMsg/LastErrorCode")
        if code:
            raise VendorErrorMsg(operation, code, _text(found, "ErrorMsg/LastErrorDescription") or "")
        return found


def _el(name: str, value: str | None, children: Sequence[Element] = ()) -> Element:
    el = etree.Element(f"{{{NS}}}{name}", nsmap={None: NS})  # type: ignore[dict-item]
    if value is not None:
        el.text = value
    for child in children:
        if child.text is not None or len(child):  # an element with a None value is left out
            el.append(child)
    return el


def _text(parent: Element, path: str) -> str | None:
    qualified = "/".join(f"{{{NS}}}{part}" for part in path.split("/"))
    return text(parent.findtext(qualified))


def _due(row: Element, date_field: str, term_field: str) -> date | None:
    term, day = _text(row, term_field), _text(row, date_field)
    if term is None or day is None or not term.lstrip("-").isdigit():
        return None
    try:
        return iso_date(day) + timedelta(days=int(term))
    except ValueError:
        return None


def map_debtor(relatie: Element) -> Debtor:
    """A ``cRelatie`` (SPEC.md §4.3): ``Adres2``… is a second (postal) address block, not a street line."""
    company = _text(relatie, "Bedrijf")
    person = _text(relatie, "BP") == "P"
    land = _text(relatie, "Land")
    country = None
    if land is not None:
        country = land.upper() if len(land) == 2 and land.isalpha() else COUNTRY_NAMES.get(land.lower())
    iban = _text(relatie, "IBAN")
    return Debtor(
        code=_text(relatie, "Code") or "",
        company_name=company or _text(relatie, "Contactpersoon"),
        is_company=not person,
        email=_text(relatie, "Email"),
        phone=_text(relatie, "Telefoon") or _text(relatie, "GSM"),
        mobile=_text(relatie, "GSM"),
        street_1=_text(relatie, "Adres"),
        postal_code=_text(relatie, "Postcode"),
        city=_text(relatie, "Plaats"),
        country_code=country,
        vat_number=_text(relatie, "BTWNummer"),
        coc_number=_text(relatie, "KvkNummer"),
        iban=iban.replace(" ", "").upper() if iban else None,
    )


def build(ctx: ConnectorContext) -> Connector:
    return EBoekhouden(ctx)


VENDOR = Vendor("eboekhouden", VENDOR_NAME, SETTINGS, secrets, build)
