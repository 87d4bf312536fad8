"""A fake Twinfield built from SPEC.md §2.9 (the fake-server checklist).

Login host: ``/auth/authentication/connect/authorize`` (needs ``nonce`` and the ``openid`` and
``twf.organisationUser`` scopes), ``…/token`` (client credentials as Basic **or** in the body; ``expires_in``
3600 as a number; the refresh token rotates, switchable, and an old one gives 400 ``invalid_grant``),
``…/accesstokenvalidation?token=`` (claims with ``twf.clusterUrl`` pointing back at this fake under a path
of its own; 400 for an invalid token; Basic auth optional). Cluster: ``/webservices/processxml.asmx``
``ProcessXmlString`` with an escaped (or CDATA) request, checking the ``AccessToken`` and ``CompanyCode``
headers (``CompanyId`` optional), answering ``list`` offices/dimensions, ``read`` dimensions and ``columns``
``100``/``130_3`` (filters ``between``/``equal``, unknown fields refused with ``result="0"``, an optional row
cap); ``/webservices/finder.asmx`` ``Search`` (DIM). Faults: "Access denied. Token invalid" for an expired or
revoked token, "Company ontbreekt" without CompanyCode. 429 with ``Retry-After`` over a credit budget per
minute (list/read/columns cost 1 credit, anything else 3) with ``X-RateLimit-*`` headers.
"""

from __future__ import annotations

import base64
import itertools
import secrets
from collections.abc import Iterable
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any
from urllib.parse import urlencode
from xml.sax.saxutils import escape, quoteattr

from lxml import etree

from tests.fakes.base import FakeClock, FakeServer, RealClock, Request, Response, json_response
from tests.fakes.soap import PARSER, BadRequest, child_text, read_envelope, soap_fault, soap_response

TWF = "http://www.twinfield.com/"
AUTH = "/auth/authentication/connect"
CLUSTER_PATH = "/cluster/accounting1"
BROWSE_FIELDS = {
    "fin.trs.head.code": "String",
    "fin.trs.head.shortname": "String",
    "fin.trs.head.number": "Decimal",
    "fin.trs.head.status": "String",
    "fin.trs.head.date": "Date",
    "fin.trs.head.yearperiod": "String",
    "fin.trs.line.dim2": "String",
    "fin.trs.line.dim2name": "String",
    "fin.trs.head.curcode": "String",
    "fin.trs.line.valuesigned": "Value",
    "fin.trs.line.basevaluesigned": "Value",
    "fin.trs.line.repvaluesigned": "Value",
    "fin.trs.line.openbasevaluesigned": "Value",
    "fin.trs.line.invnumber": "String",
    "fin.trs.line.datedue": "Date",
    "fin.trs.line.matchstatus": "String",
    "fin.trs.line.matchnumber": "Decimal",
    "fin.trs.line.matchdate": "Date",
    "fin.trs.line.openvaluesigned": "Value",
    "fin.trs.line.availableforpayruns": "String",
    "fin.trs.line.modified": "DateTime",
}
QUERY_ROOTS = {"list", "read", "columns", "accountcode", "accountcodes"}


def basic(client_id: str, secret: str) -> str:
    return "Basic " + base64.b64encode(f"{client_id}:{secret}".encode()).decode()


class FakeTwinfield(FakeServer):
    def __init__(self, clock: FakeClock | RealClock | None = None, company: str = "NLA000001"):
        super().__init__(clock)
        self.company = company
        self.offices = {company: "Fake Holding B.V."}
        self.organisation = "FAKEORG"
        self.clients = {"twf-client": "twf-secret"}
        self.codes: dict[str, tuple[str, datetime]] = {}
        self.access_tokens: dict[str, datetime] = {}
        self.refresh_tokens: set[str] = set()
        self.rotate_refresh_tokens = True  # UNCONFIRMED at Twinfield; always persisted by the connector
        self.token_lifetime = 3600
        self.credits_per_minute: int | None = 50  # the FUP for an uncertified client id; None: off
        self.max_browse_rows: int | None = None  # no paging exists; a capped answer says first/last/total
        self.debtors: dict[str, dict[str, Any]] = {}
        self.lines: list[dict[str, Any]] = []
        self._numbers = itertools.count(202600001)
        self._spent: list[tuple[datetime, int]] = []

    @property
    def cluster_url(self) -> str:
        return self.base_url + CLUSTER_PATH

    # -- data -----------------------------------------------------------------------------------------

    def add_debtor(self, code: str, name: str, **fields: Any) -> str:
        self.debtors[code] = {
            "name": name,
            "email": f"debiteuren@{code}.example.nl",
            "telephone": "010-1234567",
            "attention": "Crediteurenadministratie",
            "street": "Coolsingel 10",
            "street2": "",
            "postcode": "3011 AD",
            "city": "Rotterdam",
            "country": "NL",
            "iban": "NL02ABNA0123456789",
            "reminderemail": "",
            "vatnumber": "",
            "cocnumber": "",
            **fields,
        }
        return code

    def add_invoice(
        self,
        debtor: str,
        number: str,
        total: str,
        open_amount: str | None = None,
        invoice_date: date | None = None,
        due_days: int = 30,
        currency: str = "EUR",
        status: str = "available",
    ) -> dict[str, Any]:
        day = invoice_date or self.clock.now().date() - timedelta(days=20)
        line = {
            "office": self.company,
            "code": "VRK",
            "number": next(self._numbers),
            "line": 1,
            "date": day,
            "yearperiod": f"{day.year}/{day.month:02d}",
            "dim2": debtor,
            "dim2name": self.debtors.get(debtor, {}).get("name", ""),
            "curcode": currency,
            "value": Decimal(total),
            "open": Decimal(total if open_amount is None else open_amount),
            "invnumber": number,
            "datedue": day + timedelta(days=due_days),
            "matchstatus": status,
        }
        self.lines.append(line)
        return line

    def pay(self, number: str, amount: str) -> None:
        """A bank line matched against invoice ``number``: its open value drops by ``amount``; at zero the
        invoice line becomes ``matched``. The payment line itself is matched (and negative)."""
        invoice = next(x for x in self.lines if x["invnumber"] == number and x["code"] == "VRK")
        invoice["open"] -= Decimal(amount)
        if invoice["open"] == 0:
            invoice["matchstatus"] = "matched"
        self.lines.append(
            {
                **invoice,
                "code": "BNK",
                "number": next(self._numbers),
                "value": -Decimal(amount),
                "open": Decimal("0.00"),
                "matchstatus": "matched",
                "date": self.clock.now().date(),
            }
        )

    def revoke_access_tokens(self) -> None:
        self.access_tokens.clear()

    # -- dispatch -------------------------------------------------------------------------------------

    def is_data(self, request: Request) -> bool:
        return request.path.startswith(CLUSTER_PATH)

    def route(self, request: Request) -> Response:
        if request.path == f"{AUTH}/authorize":
            return self._authorize(request)
        if request.path == f"{AUTH}/token" and request.method == "POST":
            return self._token(request)
        if request.path == f"{AUTH}/accesstokenvalidation":
            return self._validate(request)
        if request.path == f"{CLUSTER_PATH}/webservices/processxml.asmx" and request.method == "POST":
            return self._soap(request, self._process_xml)
        if request.path == f"{CLUSTER_PATH}/webservices/finder.asmx" and request.method == "POST":
            return self._soap(request, self._finder)
        return Response(404, b"<html><body>404 Not Found</body></html>", {"Content-Type": "text/html"})

    # -- the login host --------------------------------------------------------------------------------

    def _authorize(self, request: Request) -> Response:
        scopes = (request.param("scope") or "").split()
        if request.param("client_id") not in self.clients or request.param("response_type") != "code":
            return json_response({"error": "unauthorized_client"}, 400)
        if not request.param("nonce") or "openid" not in scopes or "twf.organisationUser" not in scopes:
            return json_response({"error": "invalid_request", "error_description": "nonce and scopes required"}, 400)
        code = secrets.token_hex(16)
        redirect = request.param("redirect_uri") or ""
        self.codes[code] = (redirect, self.clock.now() + timedelta(minutes=5))
        query = urlencode({"code": code, "scope": " ".join(scopes), "state": request.param("state") or ""})
        return Response(302, b"", {"Location": f"{redirect}?{query}"})

    def _client(self, request: Request) -> str | None:
        header = request.headers.get("authorization", "")
        if header.startswith("Basic "):
            client_id, _, secret = base64.b64decode(header[6:]).decode().partition(":")
        else:
            form = request.form()
            client_id, secret = form.get("client_id", ""), form.get("client_secret", "")
        return client_id if self.clients.get(client_id) == secret else None

    def _token(self, request: Request) -> Response:
        if self._client(request) is None:
            return json_response({"error": "invalid_client"}, 400)
        form, now = request.form(), self.clock.now()
        grant = form.get("grant_type")
        rotate = True
        if grant == "authorization_code":
            redirect, valid_until = self.codes.pop(form.get("code", ""), ("", now))
            if redirect != form.get("redirect_uri") or now > valid_until:
                return json_response({"error": "invalid_grant"}, 400)
        elif grant == "refresh_token":
            old = form.get("refresh_token", "")
            if old not in self.refresh_tokens:
                return json_response({"error": "invalid_grant"}, 400)
            rotate = self.rotate_refresh_tokens
            if rotate:
                self.refresh_tokens.discard(old)
        else:
            return json_response({"error": "unsupported_grant_type"}, 400)
        access = "eyJhbGciOiJSUzI1NiJ9." + secrets.token_urlsafe(24)
        self.access_tokens[access] = now + timedelta(seconds=self.token_lifetime)
        body: dict[str, Any] = {"access_token": access, "expires_in": self.token_lifetime, "token_type": "Bearer"}
        if rotate:
            refresh = secrets.token_hex(20)
            self.refresh_tokens.add(refresh)
            body["refresh_token"] = refresh
        if grant == "authorization_code":
            body["id_token"] = "eyJ0eXAiOiJKV1QifQ." + secrets.token_urlsafe(12)
        return json_response(body)

    def _valid(self, token: str | None) -> bool:
        expiry = self.access_tokens.get(token or "")
        return expiry is not None and self.clock.now() < expiry

    def _validate(self, request: Request) -> Response:
        token = request.param("token")
        if not self._valid(token):
            return json_response({"Message": "invalid_token"}, 400)
        now = int(self.clock.now().timestamp())
        return json_response(
            {
                "aud": f"{self.base_url}/auth/authentication/resources",
                "iss": f"{self.base_url}/auth/authentication",
                "nbf": str(now),
                "exp": str(int(self.access_tokens[token or ""].timestamp())),
                "client_id": "twf-client",
                "scope": ["openid", "offline_access", "twf.user", "twf.organisationUser", "twf.organisation"],
                "sub": "5b7e0a52-0c5c-4a1e-9d0a-4f7a0c8a1e11",
                "twf.organisationUserCode": "USERCODE",
                "twf.organisationCode": self.organisation,
                "twf.organisationId": "0c8a1e11-4f7a-4a1e-9d0a-5b7e0a520c5c",
                "twf.clusterUrl": self.cluster_url,
            }
        )

    # -- the cluster -----------------------------------------------------------------------------------

    def _soap(self, request: Request, handle: Any) -> Response:
        try:
            header, body = read_envelope(request)
        except BadRequest as exc:
            return soap_fault(str(exc))
        twf_header = header.find(f"{{{TWF}}}Header") if header is not None else None
        if not self._valid(child_text(twf_header, TWF, "AccessToken")):
            return soap_fault("Access denied. Token invalid", detail="354")
        company = child_text(twf_header, TWF, "CompanyCode")
        if not company:
            return soap_fault("Toegang geweigerd. Company ontbreekt in request header.")
        if company not in self.offices:
            return soap_fault(f"Toegang geweigerd. Geen toegang tot administratie {company}.")
        response: Response = handle(body, company)
        return response

    def _rate_limit(self, credits: int) -> dict[str, str] | Response:
        if self.credits_per_minute is None:
            return {}
        now = self.clock.now()
        self._spent = [(t, c) for t, c in self._spent if t > now - timedelta(minutes=1)]
        used = sum(c for _, c in self._spent)
        headers = {"X-RateLimit-Limit": str(self.credits_per_minute)}
        if used + credits > self.credits_per_minute:
            wait = max(1, int((self._spent[0][0] + timedelta(minutes=1) - now).total_seconds() + 0.999))
            body = b'{"Message":"Fair use policy: too many requests"}'
            return Response(
                429,
                body,
                {"Content-Type": "application/json", "Retry-After": str(wait), "X-RateLimit-Remaining": "0", **headers},
            )
        self._spent.append((now, credits))
        headers["X-RateLimit-Remaining"] = str(self.credits_per_minute - used - credits)
        headers["X-RateLimit-Credited"] = str(credits)
        return headers

    def _process_xml(self, body: Any, company: str) -> Response:
        if body.tag != f"{{{TWF}}}ProcessXmlString":
            return soap_fault(f"Server did not recognize the value of HTTP Header SOAPAction: {body.tag}")
        raw = child_text(body, TWF, "xmlRequest")
        try:
            inner = etree.fromstring((raw or "").encode("utf-8"), PARSER)
        except etree.XMLSyntaxError:
            return soap_fault("Server was unable to process request. ---> xmlRequest is not valid XML")
        limited = self._rate_limit(1 if inner.tag in QUERY_ROOTS else 3)
        if isinstance(limited, Response):
            return limited
        answer = self._answer(inner, company)
        result = f'<ProcessXmlStringResponse xmlns="{TWF}"><ProcessXmlStringResult>{escape(answer)}</ProcessXmlStringResult></ProcessXmlStringResponse>'  # noqa: E501
        return soap_response(result, limited)

    def _answer(self, inner: Any, company: str) -> str:
        kind = inner.findtext("type")
        if inner.tag == "list" and kind == "offices":
            offices = "".join(
                f"<office name={quoteattr(n)} shortname={quoteattr(n)}>{c}</office>" for c, n in self.offices.items()
            )
            return f'<offices result="1">{offices}</offices>'
        if inner.tag in ("list", "read") and kind == "dimensions":
            office = inner.findtext("office")
            if office != company:
                return f'<dimensions result="0" msgtype="error" msg="Administratie {escape(office or "")} komt niet overeen met de header."/>'  # noqa: E501
            if inner.findtext("dimtype") != "DEB":
                return '<dimensions result="0" msgtype="error" msg="Dimensietype is niet toegestaan."/>'
            if inner.tag == "list":
                rows = "".join(
                    f'<dimension name={quoteattr(d["name"])} shortname="">{c}</dimension>'
                    for c, d in sorted(self.debtors.items())
                )
                return f'<dimensions office="{office}" type="DEB" result="1">{rows}<dimension name="" shortname="">DEB</dimension></dimensions>'  # noqa: E501
            return self._dimension(office, inner.findtext("code") or "")
        if inner.tag == "columns":
            return self._browse(inner, company)
        return f'<{inner.tag} result="0" msgtype="error" msg="Onbekend verzoek."/>'

    def _dimension(self, office: str, code: str) -> str:
        d = self.debtors.get(code)
        if d is None:
            return (
                f'<dimension result="0"><office>{office}</office><type>DEB</type>'
                f'<code msgtype="error" msg="Object {escape(code)} bestaat niet." result="0">{escape(code)}</code>'
                "</dimension>"
            )
        e = {k: escape(str(v)) for k, v in d.items()}
        return (
            f'<dimension status="active" result="1"><office name="{office}" shortname="{office}">{office}</office>'
            f'<type name="Debiteuren" shortname="Debiteuren">DEB</type><code>{escape(code)}</code>'
            f"<uid>{secrets.token_hex(8)}</uid><name>{e['name']}</name><shortname/><website/>"
            f"<cocnumber>{e['cocnumber']}</cocnumber><vatnumber>{e['vatnumber']}</vatnumber>"
            "<financials><matchtype>customersupplier</matchtype><duedays>30</duedays></financials>"
            '<addresses><address id="1" type="postal" default="false"><name>Postbus</name>'
            '<country name="Nederland" shortname="">NL</country><city>Elders</city><postcode>9999 ZZ</postcode>'
            "<field2>Postbus 1</field2></address>"
            f'<address id="2" type="invoice" default="true"><name>{e["name"]}</name>'
            f'<country name="Nederland" shortname="">{e["country"]}</country><city>{e["city"]}</city>'
            f"<postcode>{e['postcode']}</postcode><telephone>{e['telephone']}</telephone><telefax/>"
            f"<email>{e['email']}</email><contact/><field1>{e['attention']}</field1><field2>{e['street']}</field2>"
            f"<field3>{e['street2']}</field3><field4/><field5/><field6/></address></addresses>"
            '<banks><bank default="false" id="1"><iban>NL18RABO0123459876</iban></bank>'
            f'<bank default="true" id="2"><ascription>{e["name"]}</ascription><accountnumber/>'
            f"<iban>{e['iban']}</iban><biccode/></bank></banks>"
            f'<creditmanagement><reminderemail>{e["reminderemail"]}</reminderemail><blocked locked="false" modified="">false</blocked></creditmanagement>'  # noqa: E501
            "</dimension>"
        )

    def _browse(self, columns: Any, company: str) -> str:
        code = columns.get("code")
        if code not in ("100", "130_3"):
            return f'<browse result="0" msg="Browse code {escape(code or "")} bestaat niet."/>'
        fields: list[str] = []
        checks = []
        for column in columns.iterfind("column"):
            field = column.findtext("field") or ""
            if field not in BROWSE_FIELDS:
                return f'<browse result="0" msg="Veld bestaat niet: {escape(field)}"/>'
            if column.findtext("visible") == "true" and field != "fin.trs.head.yearperiod":
                fields.append(field)
            operator = column.findtext("operator")
            if operator in ("between", "equal"):
                checks.append((field, operator, column.findtext("from") or "", column.findtext("to") or ""))
        rows = [x for x in self.lines if x["office"] == company and all(_matches(x, c) for c in checks)]
        total = len(rows)
        if self.max_browse_rows is not None:
            rows = rows[: self.max_browse_rows]
        header = "".join(f'<td hideforuser="false" type="{BROWSE_FIELDS[f]}">{f}</td>' for f in fields)
        body = "".join(self._tr(x, fields) for x in rows)
        return f'<browse result="1" first="1" last="{len(rows)}" total="{total}"><th>{header}</th>{body}</browse>'

    def _tr(self, line: dict[str, Any], fields: Iterable[str]) -> str:
        cells = []
        for f in fields:
            value = _value(line, f)
            extra = ""
            if BROWSE_FIELDS[f] == "Date" and value:
                extra = f' name="{value[6:]}/{value[4:6]}/{value[:4]}"'
            if f == "fin.trs.line.matchstatus":
                extra = f' name="{ {"available": "Beschikbaar", "matched": "Afgeletterd"}.get(value, value) }"'
            cells.append(f'<td field="{f}" hideforuser="false" type="{BROWSE_FIELDS[f]}"{extra}>{escape(value)}</td>')
        key = f"<key><office>{line['office']}</office><code>{line['code']}</code><number>{line['number']}</number><line>{line['line']}</line></key>"  # noqa: E501
        return f"<tr>{''.join(cells)}{key}</tr>"

    def _finder(self, body: Any, company: str) -> Response:
        """``Search(type, pattern, field, firstRow, maxRows, options)``: DIM with ``dimtype`` DEB."""
        if body.tag != f"{{{TWF}}}Search":
            return soap_fault("Server did not recognize the value of HTTP Header SOAPAction.")
        limited = self._rate_limit(1)
        if isinstance(limited, Response):
            return limited
        first = int(child_text(body, TWF, "firstRow") or "1")
        count = int(child_text(body, TWF, "maxRows") or "25")
        options = {
            (o.findtext(f"{{{TWF}}}string[1]") or ""): (o.findtext(f"{{{TWF}}}string[2]") or "")
            for o in body.iterfind(f"{{{TWF}}}options/{{{TWF}}}ArrayOfString")
        }
        if child_text(body, TWF, "type") != "DIM" or options.get("dimtype") != "DEB":
            message = "<MessageOfErrorCodes><Type>Error</Type><Text>Option not allowed</Text><Code>OptionNotAllowed</Code></MessageOfErrorCodes>"  # noqa: E501
            return soap_response(
                f'<SearchResponse xmlns="{TWF}"><SearchResult>{message}</SearchResult></SearchResponse>'
            )
        codes = sorted(self.debtors)
        page = codes[first - 1 : first - 1 + count]
        items = "".join(
            f"<ArrayOfString><string>{c}</string><string>{escape(self.debtors[c]['name'])}</string></ArrayOfString>"
            for c in page
        )
        columns = "<Columns><string>Code</string><string>Naam</string></Columns>"
        data = f"<TotalRows>{len(codes)}</TotalRows>{columns}<Items>{items}</Items>"
        return soap_response(
            f'<SearchResponse xmlns="{TWF}"><SearchResult/><data>{data}</data></SearchResponse>', limited
        )


def _value(line: dict[str, Any], field: str) -> str:
    name = field.rsplit(".", 1)[1]
    mapping = {
        "number": line["number"],
        "code": line["code"],
        "date": f"{line['date']:%Y%m%d}",
        "yearperiod": line["yearperiod"],
        "dim2": line["dim2"],
        "dim2name": line["dim2name"],
        "curcode": line["curcode"],
        "valuesigned": f"{line['value']:.2f}",
        "basevaluesigned": f"{line['value']:.2f}",
        "openvaluesigned": f"{line['open']:.2f}",
        "openbasevaluesigned": f"{line['open']:.2f}",
        "invnumber": line["invnumber"],
        "datedue": f"{line['datedue']:%Y%m%d}",
        "matchstatus": line["matchstatus"],
    }
    return str(mapping.get(name, ""))


def _matches(line: dict[str, Any], check: tuple[str, str, str, str]) -> bool:
    field, operator, low, high = check
    value = _value(line, field)
    if operator == "equal":
        return value == low
    return low <= value <= high
