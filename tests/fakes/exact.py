"""A fake Exact Online built from SPEC.md §1.9 (the fake-server checklist).

Token endpoint: ``expires_in`` as a string; the refresh token rotates and an old one gives 400
``invalid_grant``; a token request within 570 s of the previous one gives 400 ``access_denied`` with a
``Reason: TooEarlyToRefreshTokens`` header. 401 once the access token has expired (600 s, switchable; and
``revoke_access_tokens`` to end one early). JSON only with ``Accept: application/json`` (else Atom).
``/current/Me``; ``read/financial/ReceivablesList``, ``bulk/CRM/Accounts``, ``crm/BankAccounts`` and
``salesinvoice/SalesInvoices`` with ``$select``, a small OData ``$filter`` (eq, and, or, parentheses), pages
of 60 (bulk: 1000) through an absolute ``__next`` with ``$skiptoken``; ``/Date(ms)/`` dates; padded
``Code``/``Country``/``Language``; ``X-RateLimit-*`` headers and 429 after 60 calls a minute (only the
minutely family on that 429); OData error bodies (``Forbidden - WrongDivision``). Invoice PDFs: a sales
invoice's ``Document`` GUID, its ``documents/DocumentAttachments`` (``FileName``, ``Url``), and the file at
``/docs/SysAttachment.aspx`` which needs the bearer token and gives the file only with ``&Download=1`` (a
viewer page without it).
"""

from __future__ import annotations

import itertools
import re
import secrets
import uuid
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from typing import Any
from urllib.parse import quote, urlencode

from tests.fakes.base import FakeClock, FakeServer, RealClock, Request, Response, json_response
from tests.test_pdf import make_pdf

SERVICE_PAGE = 60
BULK_PAGE = 1000


def odata_error(message: str, status: int) -> Response:
    return json_response({"error": {"code": "", "message": {"lang": "", "value": message}}}, status)


def ms(day: date) -> str:
    return f"/Date({int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp() * 1000)})/"


# -- a small OData $filter evaluator: field eq literal, and, or, parentheses ------------------------------

_TOKEN = re.compile(r"\s*(\(|\)|guid'[^']*'|'[^']*'|-?\d+L?|\band\b|\bor\b|\beq\b|true|false|[A-Za-z_]+)")


Row = dict[str, Any]
Check = Callable[[Row], bool]


def parse_filter(text: str) -> Check:
    """Parse ``$filter``; an ``or`` of ``eq`` on one field becomes a set lookup (the connector's batches)."""
    tokens = [t for t in _TOKEN.findall(text) if t.strip()]
    pos = 0

    def peek() -> str | None:
        return tokens[pos] if pos < len(tokens) else None

    def take() -> str:
        nonlocal pos
        pos += 1
        return tokens[pos - 1]

    def literal(token: str) -> Any:
        if token.startswith("guid'"):
            return token[5:-1].lower()
        if token.startswith("'"):
            return token[1:-1]
        if token in ("true", "false"):
            return token == "true"
        return int(token.rstrip("L"))

    def term() -> tuple[Any, ...]:
        if peek() == "(":
            take()
            inner = expr()
            if take() != ")":
                raise ValueError("Error in query syntax.")
            return inner
        name = take()
        if take() != "eq":
            raise ValueError("Error in query syntax.")
        return ("eq", name, literal(take()))

    def expr() -> tuple[Any, ...]:
        parts, ops = [term()], set()
        while peek() in ("and", "or"):
            ops.add(take())
            parts.append(term())
        if len(ops) > 1:
            raise ValueError("mixed and/or without parentheses")
        return (ops.pop(), *parts) if ops else parts[0]

    def compile_(node: tuple[Any, ...]) -> Check:
        if node[0] == "eq":
            _, name, value = node
            return lambda r: _norm(r.get(name)) == value
        children = node[1:]
        if node[0] == "or" and all(c[0] == "eq" and c[1] == children[0][1] for c in children):
            name, values = children[0][1], {c[2] for c in children}
            return lambda r: _norm(r.get(name)) in values
        checks = [compile_(c) for c in children]
        if node[0] == "and":
            return lambda r: all(c(r) for c in checks)
        return lambda r: any(c(r) for c in checks)

    tree = expr()
    if pos != len(tokens):
        raise ValueError("Error in query syntax.")
    return compile_(tree)


def _norm(value: Any) -> Any:
    return value.lower() if isinstance(value, str) else value


class FakeExact(FakeServer):
    def __init__(self, clock: FakeClock | RealClock | None = None, division: int = 4133185):
        super().__init__(clock)
        self.division = division
        self.clients = {"exact-client": "exact-secret"}
        self.codes: dict[str, tuple[str, datetime]] = {}
        self.access_tokens: dict[str, datetime] = {}
        self.refresh_token: str | None = None  # only the newest is valid
        self.refresh_expires: datetime | None = None
        self.last_token_request: datetime | None = None
        self.token_lifetime = 600
        self.min_refresh_interval = 570
        self.page_size = SERVICE_PAGE
        self.bulk_page_size = BULK_PAGE
        self.minutely_limit: int | None = 60  # None: off
        self.daily_limit = 5000
        self.accounts: dict[str, dict[str, Any]] = {}
        self.bank_accounts: list[dict[str, Any]] = []
        self.receivables: dict[int, dict[str, Any]] = {}
        self.sales_invoices: dict[str, dict[str, Any]] = {}
        self.attachments: dict[str, dict[str, Any]] = {}  # DocumentAttachments by ID (Url made when served)
        self.attachment_files: dict[str, bytes] = {}
        self._hids = itertools.count(387)
        self._minute: list[datetime] = []
        self._day_count = 0

    # -- data -----------------------------------------------------------------------------------------

    def add_account(self, code: str, name: str, **fields: Any) -> str:
        account_id = str(uuid.uuid4())
        self.accounts[account_id] = {
            "ID": account_id,
            "Code": code.rjust(18),
            "Name": name,
            "Email": f"debiteuren@{code}.example.nl",
            "Phone": "020-1234567",
            "PhoneExtension": None,
            "AddressLine1": "Keizersgracht 1",
            "AddressLine2": None,
            "AddressLine3": None,
            "Postcode": "1015 AA",
            "City": "Amsterdam",
            "Country": "NL ",
            "Language": "NL        ",
            "VATNumber": None,
            "ChamberOfCommerce": None,
            "Status": "C",
            "IsSales": True,
            **fields,
        }
        return account_id

    def add_bank_account(self, account_id: str, number: str, main: bool = True) -> None:
        self.bank_accounts.append({"ID": str(uuid.uuid4()), "Account": account_id, "BankAccount": number, "Main": main})

    def add_invoice(
        self,
        account_id: str,
        number: int,
        total: float,
        open_amount: float | None = None,
        invoice_date: date | None = None,
        due_days: int = 14,
        currency: str = "EUR",
        description: str = "Levering diverse artikelen",
        sales_invoice: bool = True,
        document: bool = False,
    ) -> int:
        """An open item; with ``sales_invoice`` its sales invoice (the total), with ``document`` a PDF linked
        to that sales invoice."""
        day = invoice_date or self.clock.now().date() - timedelta(days=20)
        hid = next(self._hids)
        account = self.accounts[account_id]
        self.receivables[hid] = {
            "HID": hid,
            "AccountId": account_id,
            "AccountCode": account["Code"],
            "AccountName": account["Name"],
            "Amount": total if open_amount is None else open_amount,
            "AmountInTransit": 0.0,
            "CurrencyCode": currency,
            "Description": description,
            "DueDate": ms(day + timedelta(days=due_days)),
            "EntryNumber": 24000000 + hid,
            "Id": str(uuid.uuid4()),
            "InvoiceDate": ms(day),
            "InvoiceNumber": number,
            "JournalCode": "70",
            "JournalDescription": "Verkoopboek",
            "Notes": None,
            "YourRef": f"PO-{number}",
        }
        if sales_invoice:
            invoice_id = str(uuid.uuid4())
            self.sales_invoices[invoice_id] = {
                "InvoiceID": invoice_id,
                "InvoiceNumber": number,
                "AmountFC": total,
                "AmountDC": total,
                "Currency": currency,
                "InvoiceTo": account_id,
                "Status": 50,
                "Type": 8020,
                "Document": self.add_document(f"Factuur {number}.pdf", make_pdf(f"Factuur {number}"))
                if document
                else None,
            }
        return hid

    def add_document(self, file_name: str, content: bytes) -> str:
        """A document with one attachment; its GUID (a sales invoice's ``Document``)."""
        document_id, attachment_id = str(uuid.uuid4()), str(uuid.uuid4())
        self.attachments[attachment_id] = {
            "ID": attachment_id,
            "Document": document_id,
            "FileName": file_name,
            "FileSize": float(len(content)),
        }
        self.attachment_files[attachment_id] = content
        return document_id

    def set_open(self, number: int, amount: float | None) -> None:
        """A payment: the open amount becomes ``amount``; None removes the item (fully paid)."""
        for hid, row in list(self.receivables.items()):
            if row["InvoiceNumber"] == number:
                if amount is None:
                    del self.receivables[hid]
                else:
                    row["Amount"] = amount

    # -- dispatch -------------------------------------------------------------------------------------

    def is_data(self, request: Request) -> bool:
        return request.path.startswith("/api/v1/")

    def route(self, request: Request) -> Response:
        if request.path == "/api/oauth2/auth":
            return self._authorize(request)
        if request.path == "/api/oauth2/token" and request.method == "POST":
            return self._token(request)
        if request.path == "/docs/SysAttachment.aspx":
            return self._attachment_file(request)
        if not request.path.startswith("/api/v1/"):
            return odata_error("Not found", 404)
        if not self._authorised(request):
            return Response(401, b"", {"WWW-Authenticate": 'Bearer error="invalid_token"'})
        limited, headers = self._rate_limit()
        if limited is not None:
            return limited
        if "application/json" not in request.headers.get("accept", ""):
            return Response(
                200,
                b'<?xml version="1.0"?><feed xmlns="http://www.w3.org/2005/Atom"/>',
                {"Content-Type": "application/atom+xml", **headers},
            )
        response = self._data(request)
        response.headers.update(headers)
        return response

    def _data(self, request: Request) -> Response:
        rest = request.path[len("/api/v1/") :]
        if rest == "current/Me":
            me = {"CurrentDivision": self.division, "FullName": "Fake Gebruiker", "UserID": str(uuid.uuid4())}
            return json_response({"d": {"results": [self._select(request, me, "current/Me")]}})
        division, _, resource = rest.partition("/")
        if division != str(self.division):
            return odata_error("Forbidden - WrongDivision", 403)
        tables: dict[str, tuple[list[dict[str, Any]], str, int]] = {
            "read/financial/ReceivablesList": (list(self.receivables.values()), "HID", self.page_size),
            "bulk/CRM/Accounts": (list(self.accounts.values()), "ID", self.bulk_page_size),
            "crm/BankAccounts": (self.bank_accounts, "ID", self.page_size),
            "salesinvoice/SalesInvoices": (list(self.sales_invoices.values()), "InvoiceID", self.page_size),
            "documents/DocumentAttachments": (
                [{**a, "Url": self._attachment_url(a["ID"])} for a in self.attachments.values()],
                "ID",
                self.page_size,
            ),
        }
        if resource not in tables:
            return odata_error(f"Resource not found: {resource}", 404)
        rows, key, size = tables[resource]
        if resource.startswith("bulk/") and not request.param("$select"):
            return odata_error("$select is required for bulk endpoints", 400)
        text = request.param("$filter")
        if text:
            try:
                keep = parse_filter(text)
            except (ValueError, IndexError):
                return odata_error("Error in query syntax.", 400)
            rows = [r for r in rows if keep(r)]
        rows = sorted(rows, key=lambda r: r[key])
        token = request.param("$skiptoken")
        if token:
            after = int(token.rstrip("L")) if key == "HID" else token[5:-1] if token.startswith("guid'") else token
            rows = [r for r in rows if r[key] > after]
        page = rows[:size]
        body: dict[str, Any] = {"results": [self._select(request, r, resource) for r in page]}
        if len(rows) > size:
            last = page[-1][key]
            skiptoken = f"{last}L" if key == "HID" else f"guid'{last}'"
            query = {k: v[0] for k, v in request.query.items() if k != "$skiptoken"}
            query["$skiptoken"] = skiptoken
            body["__next"] = f"{self.base_url}{request.path}?{urlencode(query, quote_via=quote, safe='$,')}"
        return json_response({"d": body})

    def _select(self, request: Request, row: dict[str, Any], resource: str) -> dict[str, Any]:
        fields = request.param("$select")
        out = {k: v for k, v in row.items() if not fields or k in fields.split(",")}
        out["__metadata"] = {
            "uri": f"{self.base_url}/api/v1/{self.division}/{resource}(…)",
            "type": f"Exact.Web.Api.Models.{resource.split('/')[-1]}",
        }
        return out

    def _attachment_url(self, attachment_id: str) -> str:
        return f"{self.base_url}/docs/SysAttachment.aspx?ID={attachment_id}&_Division_={self.division}"

    def _attachment_file(self, request: Request) -> Response:
        if not self._authorised(request):
            return Response(401, b"", {"WWW-Authenticate": 'Bearer error="invalid_token"'})
        content = self.attachment_files.get(request.param("ID") or "")
        if content is None or request.param("_Division_") != str(self.division):
            return Response(404, b"<html><body>Document not found</body></html>", {"Content-Type": "text/html"})
        if request.param("Download") != "1":
            return Response(200, b"<html><body>Document viewer</body></html>", {"Content-Type": "text/html"})
        return Response(200, content, {"Content-Type": "application/pdf"})

    # -- auth -----------------------------------------------------------------------------------------

    def _authorised(self, request: Request) -> bool:
        header = request.headers.get("authorization", "")
        token = header[len("Bearer ") :] if header.startswith("Bearer ") else ""
        expiry = self.access_tokens.get(token)
        return expiry is not None and self.clock.now() < expiry

    def revoke_access_tokens(self) -> None:
        self.access_tokens.clear()

    def _authorize(self, request: Request) -> Response:
        if request.param("client_id") not in self.clients or request.param("response_type") != "code":
            return json_response({"error": "invalid_client"}, 400)
        code = "XTzM!IAAAA" + secrets.token_hex(12)  # the '!' arrives URL-encoded as %21
        redirect = request.param("redirect_uri") or ""
        self.codes[code] = (redirect, self.clock.now() + timedelta(minutes=3))
        query = urlencode({"code": code, "state": request.param("state") or ""})
        return Response(302, b"", {"Location": f"{redirect}?{query}"})

    def _token(self, request: Request) -> Response:
        form = request.form()
        now = self.clock.now()
        if self.clients.get(form.get("client_id", "")) != form.get("client_secret"):
            return json_response({"error": "invalid_client"}, 400)
        grant = form.get("grant_type")
        if grant == "authorization_code":
            redirect, valid_until = self.codes.pop(form.get("code", ""), ("", now))
            if redirect != form.get("redirect_uri") or now > valid_until:
                return json_response({"error": "invalid_grant", "error_description": "Invalid authorization code"}, 400)
        elif grant == "refresh_token":
            if form.get("refresh_token") != self.refresh_token or self.refresh_token is None:
                return json_response({"error": "invalid_grant", "error_description": "Invalid refresh token"}, 400)
            if self.refresh_expires is not None and now > self.refresh_expires:
                text = f"The refresh token expired at {self.refresh_expires:%m/%d/%Y %I:%M:%S %p}"
                return json_response({"error": "invalid_request", "error_description": text}, 400)
            if self.last_token_request and (now - self.last_token_request).total_seconds() < self.min_refresh_interval:
                return Response(
                    400,
                    b'{"error":"access_denied","error_description":"Rate limit exceeded: access_token not expired"}',
                    {"Content-Type": "application/json", "Reason": "TooEarlyToRefreshTokens: access token not expired"},
                )
        else:
            return json_response({"error": "unsupported_grant_type"}, 400)
        access = "AAEAA" + secrets.token_hex(16)
        self.refresh_token = "Gcp7!IAAAA" + secrets.token_hex(16)
        self.refresh_expires = now + timedelta(days=30)
        self.access_tokens[access] = now + timedelta(seconds=self.token_lifetime)
        self.last_token_request = now
        return json_response(
            {
                "access_token": access,
                "token_type": "bearer",
                "expires_in": str(self.token_lifetime),
                "refresh_token": self.refresh_token,
            }
        )

    # -- rate limit -----------------------------------------------------------------------------------

    def _rate_limit(self) -> tuple[Response | None, dict[str, str]]:
        now = self.clock.now()
        day_end = datetime(now.year, now.month, now.day, tzinfo=UTC) + timedelta(days=1)
        self._minute = [t for t in self._minute if t > now - timedelta(minutes=1)]
        if self.minutely_limit is None:
            return None, {}
        reset = (self._minute[0] if self._minute else now) + timedelta(minutes=1)
        minutely = {
            "X-RateLimit-Minutely-Limit": str(self.minutely_limit),
            "X-RateLimit-Minutely-Remaining": str(max(0, self.minutely_limit - len(self._minute) - 1)),
            "X-RateLimit-Minutely-Reset": str(int(reset.timestamp() * 1000)),
        }
        if len(self._minute) >= self.minutely_limit:
            minutely["X-RateLimit-Minutely-Remaining"] = "0"
            body = b'{"error":{"code":"","message":{"lang":"","value":"Too many requests"}}}'
            return Response(429, body, {"Content-Type": "application/json", **minutely}), {}
        self._minute.append(now)
        self._day_count += 1
        daily = {
            "X-RateLimit-Limit": str(self.daily_limit),
            "X-RateLimit-Remaining": str(max(0, self.daily_limit - self._day_count)),
            "X-RateLimit-Reset": str(int(day_end.timestamp() * 1000)),
        }
        return None, {**daily, **minutely}
