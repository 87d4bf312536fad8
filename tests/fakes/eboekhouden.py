"""A fake e-Boekhouden.nl SOAP service built from SPEC.md §4.4 (the fake-server checklist).

``/soap.asmx``: dispatch on the SOAPAction header (else the body element); ``OpenSession`` (username and two
security codes; bad ones give a filled ``LastErrorCode`` with HTTP 200); every other call checks
``SessionID`` **and** ``SecurityCode2``; a session expires after ``session_lifetime`` seconds (UNCONFIRMED) or
on ``expire_sessions()``; ``GetOpenPosten`` (Debiteuren/Crediteuren), ``GetRelaties`` capped at 100,
``GetMutaties`` capped at 500, ``GetFacturen`` with ``URLPDFBestand`` (invoicing-module invoices only; the
link serves the PDF without a session, ``pdf_outage`` invoice numbers answer 503), ``CloseSession``. Amounts
as ``xs:double`` (``121``, ``100.5``), dates as ``xs:dateTime``. A one-element list is just one element. A
malformed request gets a SOAP fault (HTTP 500). ``errors`` injects one-shot ``ErrorMsg`` answers per
operation. The REST API (§4.2) is not faked: the connector uses SOAP.
"""

from __future__ import annotations

import itertools
import secrets
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any
from urllib.parse import quote, unquote
from xml.sax.saxutils import escape

from tests.fakes.base import FakeClock, FakeServer, RealClock, Request, Response, outage_response
from tests.fakes.soap import BadRequest, read_envelope, soap_fault, soap_response
from tests.test_pdf import make_pdf

NS = "http://www.e-boekhouden.nl/soap"
RELATIES_CAP = 100
MUTATIES_CAP = 500
OPERATIONS = {
    "OpenSession",
    "CloseSession",
    "GetOpenPosten",
    "GetRelaties",
    "GetMutaties",
    "GetFacturen",
}


def double(value: Decimal) -> str:
    """``xs:double`` as .NET writes it: no trailing zeros (``121``, ``100.5``)."""
    text = f"{value:f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def stamp(day: date) -> str:
    return f"{day:%Y-%m-%d}T00:00:00"


class FakeEBoekhouden(FakeServer):
    def __init__(self, clock: FakeClock | RealClock | None = None):
        super().__init__(clock)
        self.users = {"demo": ("CODE1-abc", "CODE2-DEF")}
        self.sessions: dict[str, tuple[str, datetime]] = {}  # id → (username, expiry)
        self.closed: list[str] = []
        self.session_lifetime = 1800
        self.relaties: dict[str, dict[str, Any]] = {}
        self.invoices: dict[str, dict[str, Any]] = {}
        self.mutaties: list[dict[str, Any]] = []
        self.errors: dict[str, tuple[str, str]] = {}  # operation → one-shot (LastErrorCode, description)
        self.pdf_outage: set[str] = set()
        self._ids = itertools.count(1201)
        self._mutation_numbers = itertools.count(1)

    @property
    def soap_url(self) -> str:
        return f"{self.base_url}/soap.asmx"

    # -- data -----------------------------------------------------------------------------------------

    def add_relatie(self, code: str, company: str, **fields: Any) -> str:
        self.relaties[code] = {
            "ID": str(next(self._ids)),
            "AddDatum": "2020-01-01T00:00:00",
            "Code": code,
            "Bedrijf": company,
            "Contactpersoon": "",
            "Geslacht": "",
            "Adres": "Stationsplein 1",
            "Postcode": "3511 ED",
            "Plaats": "Utrecht",
            "Land": "NL",
            "Adres2": "Postbus 99",
            "Postcode2": "3500 AA",
            "Plaats2": "Utrecht",
            "Land2": "NL",
            "Telefoon": "030-1234567",
            "GSM": "",
            "FAX": "",
            "Email": f"administratie@{code.lower()}.example.nl",
            "Site": "",
            "Notitie": "",
            "Bankrekening": "",
            "Girorekening": "",
            "BTWNummer": "",
            "KvkNummer": "",
            "Aanhef": "",
            "IBAN": "NL91ABNA0417164300",
            "BIC": "",
            "BP": "B",
            "LA": "",
            "Gb_ID": "0",
            "GeenEmail": "0",
            "NieuwsbriefgroepenCount": "0",
            **fields,
        }
        return code

    def add_invoice(
        self,
        relcode: str,
        number: str,
        total: str,
        paid: str = "0",
        invoice_date: date | None = None,
        term_days: int | None = 14,
        description: str = "Levering volgens offerte",
        module: bool = False,
        mutation: bool = True,
    ) -> None:
        """An invoice booked as a ``FactuurVerstuurd`` mutation (unless ``mutation`` is False); ``module``:
        made in the invoicing module as well (then GetFacturen knows it, with a PDF URL)."""
        day = invoice_date or self.clock.now().date() - timedelta(days=20)
        self.invoices[number] = {
            "relcode": relcode,
            "date": day,
            "total": Decimal(total),
            "paid": Decimal(paid),
            "term": term_days,
            "module": module,
        }
        if mutation:
            self.add_mutation("FactuurVerstuurd", day, relcode, number, description, total, term_days)

    def add_mutation(
        self,
        soort: str,
        day: date,
        relcode: str = "",
        number: str = "",
        description: str = "",
        amount: str = "0",
        term_days: int | None = None,
    ) -> None:
        self.mutaties.append(
            {
                "MutatieNr": next(self._mutation_numbers),
                "Soort": soort,
                "Datum": day,
                "Rekening": "1300",
                "RelatieCode": relcode,
                "Factuurnummer": number,
                "Boekstuk": number,
                "Omschrijving": description,
                "Betalingstermijn": "" if term_days is None else str(term_days),
                "Bedrag": Decimal(amount),
            }
        )

    def pay(self, number: str, amount: str) -> None:
        invoice = self.invoices[number]
        invoice["paid"] += Decimal(amount)
        self.add_mutation("FactuurbetalingOntvangen", self.clock.now().date(), invoice["relcode"], number, "", amount)

    def expire_sessions(self) -> None:
        self.sessions.clear()

    # -- dispatch -------------------------------------------------------------------------------------

    def route(self, request: Request) -> Response:
        if request.path.startswith("/pdf/") and request.method == "GET":
            return self._pdf_file(request.path[len("/pdf/") :].removesuffix(".pdf"))
        if request.path != "/soap.asmx" or request.method != "POST":
            return Response(404, b"<html><body>Not Found</body></html>", {"Content-Type": "text/html"})
        try:
            _, body = read_envelope(request)
        except BadRequest as exc:
            return soap_fault(str(exc))
        action = request.headers.get("soapaction", "").strip('"')
        operation = action.rsplit("/", 1)[-1] if action else body.tag.split("}")[-1]
        if body.tag != f"{{{NS}}}{operation}" or operation not in OPERATIONS:
            return soap_fault(f"Server did not recognize the value of HTTP Header SOAPAction: {action}.")
        args = {child.tag.split("}")[-1]: child for child in body}
        if operation == "OpenSession":
            return self._open_session(args)
        if operation == "CloseSession":
            self.sessions.pop(_text(args, "SessionID"), None)
            self.closed.append(_text(args, "SessionID"))
            return soap_response(f'<CloseSessionResponse xmlns="{NS}" />')
        problem = self._check_session(args)
        if problem is None and operation in self.errors:
            problem = self.errors.pop(operation)
        if problem is not None:
            return self._result(operation, "", problem)
        try:
            inner = getattr(self, f"_{operation}")(args)
        except (ValueError, KeyError) as exc:
            return soap_fault(f"Server was unable to read request. ---> {exc}")
        return self._result(operation, inner)

    def _pdf_file(self, number: str) -> Response:
        """``URLPDFBestand``: a plain link to an invoicing-module invoice's PDF (no session)."""
        inv = self.invoices.get(unquote(number))
        if inv is None or not inv["module"]:
            return Response(404, b"<html><body>Bestand niet gevonden</body></html>", {"Content-Type": "text/html"})
        if unquote(number) in self.pdf_outage:
            return outage_response()
        return Response(200, make_pdf(f"Factuur {unquote(number)}"), {"Content-Type": "application/pdf"})

    def _result(self, operation: str, inner: str, error: tuple[str, str] | None = None) -> Response:
        code, description = error or ("", "")
        error_xml = (
            f"<ErrorMsg><LastErrorCode>{escape(code)}</LastErrorCode>"
            f"<LastErrorDescription>{escape(description)}</LastErrorDescription></ErrorMsg>"
            if error
            else "<ErrorMsg />"
        )
        return soap_response(
            f'<{operation}Response xmlns="{NS}"><{operation}Result>{error_xml}{inner}'
            f"</{operation}Result></{operation}Response>"
        )

    def _open_session(self, args: dict[str, Any]) -> Response:
        user = _text(args, "Username")
        if self.users.get(user) != (_text(args, "SecurityCode1"), _text(args, "SecurityCode2")):
            return self._result("OpenSession", "", ("E0001", "Gebruikersnaam of beveiligingscode(s) onjuist."))
        session = secrets.token_hex(16).upper()
        self.sessions[session] = (user, self.clock.now() + timedelta(seconds=self.session_lifetime))
        return self._result("OpenSession", f"<SessionID>{session}</SessionID>")

    def _check_session(self, args: dict[str, Any]) -> tuple[str, str] | None:
        found = self.sessions.get(_text(args, "SessionID"))
        if found is None or self.clock.now() >= found[1]:
            return ("E0004", "Sessie verlopen of ongeldig. Open een nieuwe sessie.")
        if self.users[found[0]][1] != _text(args, "SecurityCode2"):
            return ("E0003", "Beveiligingscode 2 is onjuist.")
        return None

    # -- operations -----------------------------------------------------------------------------------

    def _GetOpenPosten(self, args: dict[str, Any]) -> str:
        kind = _text(args, "OpSoort")
        if kind not in ("Debiteuren", "Crediteuren"):
            raise ValueError(f"Instance validation error: '{kind}' is not a valid value for OpSoort.")
        rows = []
        for number, inv in self.invoices.items() if kind == "Debiteuren" else ():
            left = inv["total"] - inv["paid"]
            if left == 0:
                continue
            rows.append(
                f"<cOpenPost><MutDatum>{stamp(inv['date'])}</MutDatum><MutFactuur>{escape(number)}</MutFactuur>"
                f"<RelCode>{escape(inv['relcode'])}</RelCode>"
                f"<RelBedrijf>{escape(self.relaties.get(inv['relcode'], {}).get('Bedrijf', ''))}</RelBedrijf>"
                f"<Bedrag>{double(inv['total'])}</Bedrag><Voldaan>{double(inv['paid'])}</Voldaan>"
                f"<Openstaand>{double(left)}</Openstaand></cOpenPost>"
            )
        return f"<Openposten>{''.join(rows)}</Openposten>"

    def _GetRelaties(self, args: dict[str, Any]) -> str:
        f = args["cFilter"]
        keyword, code, ident = (_child(f, "Trefwoord") or "").lower(), _child(f, "Code"), int(_child(f, "ID") or "x")
        rows = [
            r
            for c, r in sorted(self.relaties.items())
            if (not code or c == code)
            and (not ident or int(r["ID"]) == ident)
            and (not keyword or keyword in c.lower() or keyword in r["Bedrijf"].lower())
        ][:RELATIES_CAP]
        items = "".join(
            "<cRelatie>" + "".join(f"<{k}>{escape(v)}</{k}>" for k, v in r.items()) + "</cRelatie>" for r in rows
        )
        return f"<Relaties>{items}</Relaties>"

    def _GetMutaties(self, args: dict[str, Any]) -> str:
        f = args["cFilter"]
        number, low, high = int(_child(f, "MutatieNr") or "x"), _child(f, "MutatieNrVan"), _child(f, "MutatieNrTm")
        invoice = _child(f, "Factuurnummer")
        first, last = _when(_child(f, "DatumVan")), _when(_child(f, "DatumTm"))
        rows = [
            m
            for m in self.mutaties
            if (not number or m["MutatieNr"] == number)
            and (not low or m["MutatieNr"] >= int(low))
            and (not high or m["MutatieNr"] <= int(high))
            and (not invoice or m["Factuurnummer"] == invoice)
            and first <= m["Datum"] <= last
        ][:MUTATIES_CAP]
        items = "".join(
            f"<cMutatieList><MutatieNr>{m['MutatieNr']}</MutatieNr><Soort>{m['Soort']}</Soort>"
            f"<Datum>{stamp(m['Datum'])}</Datum><Rekening>{m['Rekening']}</Rekening>"
            f"<RelatieCode>{escape(m['RelatieCode'])}</RelatieCode>"
            f"<Factuurnummer>{escape(m['Factuurnummer'])}</Factuurnummer><Boekstuk>{escape(m['Boekstuk'])}</Boekstuk>"
            f"<Omschrijving>{escape(m['Omschrijving'])}</Omschrijving>"
            f"<Betalingstermijn>{m['Betalingstermijn']}</Betalingstermijn><InExBTW>IN</InExBTW>"
            f"<MutatieRegels><cMutatieListRegel><BedragInvoer>{double(m['Bedrag'])}</BedragInvoer>"
            f"<BedragInclBTW>{double(m['Bedrag'])}</BedragInclBTW><BTWCode>HOOG_VERK_21</BTWCode>"
            f"<Factuurnummer>{escape(m['Factuurnummer'])}</Factuurnummer><TegenrekeningCode>8000</TegenrekeningCode>"
            "</cMutatieListRegel></MutatieRegels></cMutatieList>"
            for m in rows
        )
        return f"<Mutaties>{items}</Mutaties>"

    def _GetFacturen(self, args: dict[str, Any]) -> str:
        f = args["cFilter"]
        number, relcode = _child(f, "Factuurnummer"), _child(f, "Relatiecode")
        first, last = _when(_child(f, "DatumVan")), _when(_child(f, "DatumTm"))
        items = []
        for n, inv in sorted(self.invoices.items()):
            if not inv["module"] or (number and n != number) or (relcode and inv["relcode"] != relcode):
                continue
            if not first <= inv["date"] <= last:
                continue
            total = inv["total"]
            items.append(
                f"<cFactuurList><Factuurnummer>{escape(n)}</Factuurnummer><Relatiecode>{inv['relcode']}</Relatiecode>"
                f"<Datum>{stamp(inv['date'])}</Datum><Betalingstermijn>{inv['term'] or 0}</Betalingstermijn>"
                f"<TotaalExclBTW>{double((total / Decimal('1.21')).quantize(Decimal('0.01')))}</TotaalExclBTW>"
                f"<TotaalInclBTW>{double(total)}</TotaalInclBTW>"
                f"<TotaalOpenstaand>{double(total - inv['paid'])}</TotaalOpenstaand>"
                f"<URLPDFBestand>{self.base_url}/pdf/{escape(quote(n, safe=''))}.pdf</URLPDFBestand>"
                "<Regels /></cFactuurList>"
            )
        return f"<Facturen>{''.join(items)}</Facturen>"


def _text(args: dict[str, Any], name: str) -> str:
    found = args.get(name)
    return "" if found is None else (found.text or "")


def _child(parent: Any, name: str) -> str | None:
    found = parent.find(f"{{{NS}}}{name}")
    return None if found is None else (found.text or "")


def _when(value: str | None) -> date:
    if not value:
        raise ValueError("DatumVan and DatumTm are required")
    return datetime.fromisoformat(value).date()
